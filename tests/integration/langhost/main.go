// pulumi-language-python for kindmesh's integration tier.
//
// The Go module proxy this project builds from does not serve Pulumi's own language host module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3), so tests/integration/build-tools.sh
// builds this small host instead, against the same github.com/pulumi/pulumi/sdk/v3 release as the CLI.
// It speaks the LanguageRuntime gRPC protocol and runs the program with the
// `pulumi-language-python-exec` launcher that ships in the sdk/v3 module (python/cmd/), using the
// SDK's own Python toolchain package (pip/uv/poetry, `virtualenv` from Pulumi.yaml). It does what
// `pulumi preview/up/destroy/refresh/about/plugin` need; code generation and packing are not served.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is set at build time (-X main.version=...): the Pulumi release this host is built against.
var version = "0.0.0-dev"

// Exit status with which the exec launcher says it already showed the user an actionable error.
const userActionableExit = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	execPath      string
}

func main() {
	// The engine passes flags (tracing, logging) and, last, the engine's address.
	args := os.Args[1:]
	engine := ""
	if len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") {
		engine = args[len(args)-1]
	}
	h := &host{engineAddress: engine, execPath: findExec()}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

// findExec locates pulumi-language-python-exec beside this binary, else on PATH.
func findExec() string {
	const name = "pulumi-language-python-exec"
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// resolve builds the Python toolchain for a program from its runtime options (Pulumi.yaml).
func resolve(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	if info == nil {
		return nil, errors.New("no program info from the engine")
	}
	opts := toolchain.PythonOptions{Root: info.RootDirectory, ProgramDir: info.ProgramDirectory}
	if o := info.Options.AsMap(); o != nil {
		if v, ok := o["virtualenv"].(string); ok {
			opts.Virtualenv = v
		}
		switch o["toolchain"] {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "uv":
			opts.Toolchain = toolchain.Uv
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		}
	}
	return toolchain.ResolveToolchain(opts)
}

func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.EngineAddress != "" {
		h.engineAddress = req.EngineAddress
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// The plugins a program needs: every installed distribution that carries a pulumi-plugin.json
// declaring a resource plugin (as the Pulumi Python SDKs ship them).
const listPlugins = `
import json, importlib.metadata as md
out = []
for d in md.distributions():
    for f in d.files or []:
        if f.name != "pulumi-plugin.json":
            continue
        try:
            data = json.loads(f.read_text())
        except Exception:
            continue
        out.append({"dist": d.metadata["Name"], "version": d.version, "plugin": data})
print(json.dumps(out))
`

type pluginJSON struct {
	Dist    string `json:"dist"`
	Version string `json:"version"`
	Plugin  struct {
		Resource bool   `json:"resource"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Server   string `json:"server"`
	} `json:"plugin"`
}

func (h *host) requiredPackages(ctx context.Context, info *pulumirpc.ProgramInfo,
) ([]*pulumirpc.PackageDependency, error) {
	tc, err := resolve(info)
	if err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", listPlugins)
	if err != nil {
		return nil, err
	}
	cmd.Dir = info.ProgramDirectory
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the Python packages' Pulumi plugins: %w", err)
	}
	var found []pluginJSON
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("listing the Python packages' Pulumi plugins: %w", err)
	}
	var deps []*pulumirpc.PackageDependency
	for _, p := range found {
		if !p.Plugin.Resource {
			continue
		}
		name := p.Plugin.Name
		if name == "" {
			name = strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(p.Dist), "_", "-"), "pulumi-")
		}
		v := p.Plugin.Version
		if v == "" {
			v = p.Version
		}
		deps = append(deps, &pulumirpc.PackageDependency{
			Kind: "resource", Name: name, Version: "v" + strings.TrimPrefix(v, "v"), Server: p.Plugin.Server,
		})
	}
	return deps, nil
}

func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := h.requiredPackages(ctx, req.Info)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

func (h *host) GetRequiredPlugins(ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	deps, err := h.requiredPackages(ctx, req.Info)
	if err != nil {
		return nil, err
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(deps))
	for _, d := range deps {
		plugins = append(plugins, &pulumirpc.PluginDependency{
			Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server,
		})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, err := resolve(req.Info)
	if err != nil {
		return nil, err
	}
	args := []string{"-u", h.execPath,
		"--monitor", req.MonitorAddress,
		"--engine", h.engineAddress,
		"--project", req.Project,
		"--stack", req.Stack,
		"--pwd", req.Pwd,
		"--root_directory", req.Info.RootDirectory,
		"--parallel", strconv.Itoa(int(req.Parallel)),
	}
	if req.Organization != "" {
		args = append(args, "--organization", req.Organization)
	}
	if req.DryRun {
		args = append(args, "--dry_run", "true")
	}
	program := req.Info.EntryPoint
	if program == "" {
		program = "."
	}
	if !filepath.IsAbs(program) {
		program = filepath.Join(req.Info.ProgramDirectory, program)
	}
	args = append(args, program)
	args = append(args, req.Args...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	cfg := req.Config
	if cfg == nil {
		cfg = map[string]string{}
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	secretKeys := req.ConfigSecretKeys
	if secretKeys == nil {
		secretKeys = []string{}
	}
	keys, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(keys))
	cmd.Dir = req.Pwd
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if exit.ExitCode() == userActionableExit {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d",
				exit.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := resolve(req.Info)
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable, Version: info.PythonVersion.String(),
	}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := resolve(req.Info)
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.TransitiveDependencies)
	if err != nil {
		return nil, err
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pkgs))
	for _, p := range pkgs {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// streamWriter sends what the toolchain prints to the engine.
type streamWriter struct {
	send   func(*pulumirpc.InstallDependenciesResponse) error
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	r := &pulumirpc.InstallDependenciesResponse{}
	if w.stderr {
		r.Stderr = append([]byte(nil), p...)
	} else {
		r.Stdout = append([]byte(nil), p...)
	}
	if err := w.send(r); err != nil {
		return 0, err
	}
	return len(p), nil
}

var _ io.Writer = streamWriter{}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	tc, err := resolve(req.Info)
	if err != nil {
		return err
	}
	out, errw := streamWriter{send: server.Send}, streamWriter{send: server.Send, stderr: true}
	ctx := server.Context()
	if err := tc.EnsureVenv(ctx, req.Info.RootDirectory, req.UseLanguageVersionTools, true, out, errw); err != nil {
		return err
	}
	return tc.InstallDependencies(ctx, req.Info.RootDirectory, req.UseLanguageVersionTools, true, out, errw)
}

func (h *host) Cancel(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest,
	_ grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	return status.Error(codes.Unimplemented, "kindmesh's pulumi-language-python does not run Python plugins")
}

"""Deploy-time code: runs in command and provider processes (kind CLI, readiness gates,
Kubernetes API access, the kubeconfig file). Invoked as `python -m kindmesh.deploy.<module>`;
those module paths are stored in stack state: a stable interface."""

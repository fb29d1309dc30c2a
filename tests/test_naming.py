"""kindmesh.core.naming at its boundaries (the mutants of `make mutation` that survived the
planner's tests): the longest short kind name, subnets written with host bits, every default
subnet taken, pools below the address space."""

from __future__ import annotations

from ipaddress import IPv4Address

from kindmesh.core.naming import (
    DEFAULT_SUBNETS,
    KIND_NAME_MAX,
    default_subnet,
    free_subnet,
    kind_name_for,
    pool_for,
)


def test_a_kind_name_of_exactly_the_maximum_keeps_the_short_form():
    stack = "s"
    cluster = "c" * (KIND_NAME_MAX - len("km-s-"))
    assert kind_name_for(stack, cluster) == f"km-s-{cluster}"  # 48 characters: fits
    longer = kind_name_for(stack, cluster + "c")  # 49: hashed form, still within the bound
    assert longer.startswith("km--") and len(longer) <= KIND_NAME_MAX


def test_taken_subnets_written_with_host_bits_are_still_avoided():
    """``docker network inspect`` may give ``172.24.0.1/16``; it takes the whole /16 all the same."""
    hashed = free_subnet("dev", [], DEFAULT_SUBNETS)
    host_bits = hashed.replace(".0.0/16", ".0.1/16")
    other = free_subnet("dev", [host_bits], DEFAULT_SUBNETS)
    assert other is not None and other != hashed


def test_with_every_default_subnet_taken_the_stack_keeps_its_hashed_slot():
    for stack in ("dev", "trio", "team_a", "x" * 40):
        assert default_subnet(stack, DEFAULT_SUBNETS) == default_subnet(stack)  # the caller reports the clash


def test_a_pool_below_the_address_space_is_clamped_to_zero():
    """Only for subnets already reported as too small: the slot is clamped, never an exception."""
    assert pool_for("0.0.0.0/29", 16, 1) == (IPv4Address("0.0.0.0"), IPv4Address("0.0.0.6"))
    assert pool_for("0.0.0.0/29", 16, 2) == (IPv4Address("0.0.0.0"), IPv4Address("0.0.0.0"))

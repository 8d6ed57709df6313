"""The package face: every exported name exists, and the domain code imports
no actor, event-loop or PKCS#11 library."""

from __future__ import annotations

import ast
from pathlib import Path

import trustchain.actors.ca as ca
from trustchain.supervisors.errors import TrustChainError

FORBIDDEN = {"pykka", "trio", "pkcs11"}


def test_every_exported_name_exists():
    assert sorted(ca.__all__) == sorted(set(ca.__all__))
    for name in ca.__all__:
        assert hasattr(ca, name), name


def test_every_error_is_a_trustchain_error_with_its_own_snake_case_code():
    errors = [getattr(ca, n) for n in ca.__all__ if isinstance(getattr(ca, n), type)]
    errors = [e for e in errors if issubclass(e, TrustChainError)]
    codes = [e.code for e in errors]
    assert len(errors) >= 15 and len(set(codes)) == len(codes)
    assert all(code.isidentifier() and code == code.lower() for code in codes)


def test_domain_modules_import_no_actor_loop_or_hsm_library():
    for path in Path(ca.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"

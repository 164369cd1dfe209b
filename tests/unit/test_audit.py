"""``make audit`` tells a vulnerable pin, a clean audit and an audit that checked nothing
apart: both tools report "nothing found" when they could not look anything up."""

from __future__ import annotations

from devtools.audit import (
    Verdict,
    exit_code,
    read_npm_audit,
    read_pip_audit,
    read_pypi_project,
)

PIP_VULNERABLE = {
    "dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"]}
        ]},
    ],
    "fixes": [],
}  # fmt: skip
NOT_FOUND = "Dependency not found on PyPI and could not be audited: "
PIP_UNREACHABLE = {
    "dependencies": [
        {"name": "celery", "skip_reason": NOT_FOUND + "celery (5.7.0)"},
        {"name": "redis", "skip_reason": NOT_FOUND + "redis (8.1.0)"},
    ],
    "fixes": [],
}
NPM_REFUSED = {
    "message": "405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk",
    "statusCode": 405,
    "error": {"summary": "", "detail": ""},
}  # fmt: skip
NPM_VULNERABLE = {
    "auditReportVersion": 2,
    "vulnerabilities": {"lodash": {"name": "lodash", "severity": "high", "range": "<4.17.21"}},
    "metadata": {"dependencies": {"total": 1}},
}
NPM_CLEAN = {
    "auditReportVersion": 2,
    "vulnerabilities": {},
    "metadata": {"dependencies": {"total": 9}},
}


def test_a_vulnerable_python_pin_fails_the_audit() -> None:
    verdict = read_pip_audit("python", PIP_VULNERABLE)
    assert verdict.checked == 2
    assert verdict.findings == ["jinja2==3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"]
    assert exit_code([verdict], strict=False) == 1


def test_pip_audit_s_clean_exit_with_nothing_looked_up_is_not_a_pass() -> None:
    verdict = read_pip_audit("python", PIP_UNREACHABLE)
    assert (verdict.checked, verdict.findings, len(verdict.unchecked)) == (0, [], 2)
    assert verdict.unchecked[0] == "celery: " + NOT_FOUND + "celery (5.7.0)"
    assert not verdict.conclusive
    assert exit_code([verdict], strict=False) == 0  # undecided, said so, not failed
    assert exit_code([verdict], strict=True) == 2


def test_npm_s_refused_advisory_request_is_unchecked_not_vulnerable() -> None:
    verdict = read_npm_audit("web", NPM_REFUSED)
    assert verdict.findings == [] and not verdict.conclusive
    assert "405 Method Not Allowed" in verdict.unchecked[0]


def test_a_vulnerable_node_package_fails_the_audit_and_a_clean_one_passes() -> None:
    vulnerable = read_npm_audit("web", NPM_VULNERABLE)
    assert vulnerable.findings == ["lodash: high in <4.17.21"]
    clean = read_npm_audit("web", NPM_CLEAN)
    assert clean.conclusive and clean.checked == 9
    assert exit_code([clean, vulnerable], strict=False) == 1
    assert exit_code([clean, Verdict("python", checked=3)], strict=True) == 0


def test_pypi_s_project_json_decides_only_for_a_pin_that_is_the_newest_release() -> None:
    """Its ``vulnerabilities`` describe the newest release: for an older pin they say
    nothing (a fixed vulnerability would be missing), so that pin stays unchecked."""
    project = {
        "info": {"version": "2.0.1"},
        "vulnerabilities": [{"id": "PYSEC-2026-1", "fixed_in": ["2.0.2"]}],
    }
    assert read_pypi_project("pkg", "2.0.1", project) == [
        "pkg==2.0.1: PYSEC-2026-1 (fixed in 2.0.2)"
    ]
    assert read_pypi_project("pkg", "2.0.1", {**project, "vulnerabilities": []}) == []
    assert read_pypi_project("pkg", "1.9.0", project) is None

"""The README's summary of the verification (``verification/claims.md``) is generated from
the report: every check under its claim, a claim with a failing check marked, numbers as
measured (lists as their range), and a module that could not run named."""

from nrnn.verification.core import format_claims


def check(name, claim, passed, **measured):
    return {"name": name, "claim": claim, "passed": passed, "measured": measured}


def test_claims_table_groups_checks_and_marks_failures():
    report = {
        "modules": {
            "a": {"module": "a", "checks": [check("x", 1, True, z=1.5, by_case={"u": 1})]},
            "b": {
                "module": "b",
                "checks": [
                    check("y", 1, True, slopes=[3.9, 4.1]),
                    check("w", 7, False, p_t=0.09, cases=[["k", 1]]),
                ],
            },
            "c": {"module": "c", "checks": [], "error": "a run failed"},
        }
    }
    lines = format_claims(report).splitlines()
    first = next(line for line in lines if line.startswith("| 1."))
    assert "`a.x`: z=1.5" in first and "`b.y`: slopes=3.9..4.1" in first
    assert "by_case" not in first
    assert first.endswith("| 2/2 | pass |")
    seventh = next(line for line in lines if line.startswith("| 7."))
    assert seventh.endswith("| 0/1 | **does not hold**: `b.w` |") and "cases" not in seventh
    assert lines[-1] == "Could not run: c (see report.md)."

"""The mutation-testing tool (tools/mutate.py, ``make mutate``): a planted bug whose text
moved is an error, never a silent skip, and a planted bug leaves no trace in the file."""

from pathlib import Path

from tool_modules import load_tool

ROOT = Path(__file__).resolve().parent.parent
mutate = load_tool("mutate")


def test_a_mutation_whose_text_moved_is_an_error(monkeypatch, tmp_path):
    (tmp_path / "module.py").write_text("x = 1\nx = 1\n")
    monkeypatch.setattr(mutate, "ROOT", tmp_path)
    missing = mutate.Mutation("gone", "harness", "module.py", "y = 2", "y = 3", ("-q",))
    twice = mutate.Mutation("twice", "harness", "module.py", "x = 1", "x = 2", ("-q",))
    absent = mutate.Mutation("absent", "harness", "nothing.py", "x", "y", ("-q",))
    for mutation, message in (
        (missing, "found 0 times"),
        (twice, "found 2 times"),
        (absent, "does not exist"),
    ):
        outcome = mutate.run_one(mutation, timeout=60)
        assert outcome.status == "error" and message in outcome.detail


def test_every_planted_bug_still_finds_its_text_once():
    """Code that moves must take its planted bugs along (``--list``, ``--only``): caught
    here by ``make test``, not only by the next ``make mutate``. (The control is the test
    above: text found 0 or 2 times is what this counts.)"""
    moved = [
        f"{m.name}: {m.path} holds its text {(ROOT / m.path).read_text().count(m.original)} times"
        for m in mutate.MUTATIONS
        if (ROOT / m.path).read_text().count(m.original) != 1
    ]
    assert not moved, "retarget in tools/mutate.py:\n" + "\n".join(moved)


def test_a_planted_bug_is_killed_by_a_failing_test_and_the_file_is_restored(tmp_path):
    """A throwaway module and its test in a scratch directory: the bug makes the test fail
    (killed), and the file has its original bytes and times afterwards."""
    module = tmp_path / "arithmetic.py"
    module.write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "test_arithmetic.py").write_text(
        "from arithmetic import double\n\n\ndef test_double():\n    assert double(3) == 6\n"
    )
    before = module.stat()
    killed = mutate.Mutation(
        "triple", "mathematics", "arithmetic.py", "2 * x", "3 * x", ("test_arithmetic.py",)
    )
    harmless = mutate.Mutation(
        "same", "mathematics", "arithmetic.py", "2 * x", "x * 2", ("test_arithmetic.py",)
    )
    original_root = mutate.ROOT
    mutate.ROOT = tmp_path
    try:
        assert mutate.run_one(killed, timeout=120).status == "killed"
        assert mutate.run_one(harmless, timeout=120).status == "survived"
    finally:
        mutate.ROOT = original_root
    assert module.read_text() == "def double(x):\n    return 2 * x\n"
    assert module.stat().st_mtime_ns == before.st_mtime_ns


def test_the_readme_states_the_number_of_planted_bugs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    count = len(mutate.MUTATIONS)
    assert f"plants {count} realistic bugs" in readme
    assert f" of {count}\nplanted bugs" in readme  # the last run's kill count, "killed K of N"

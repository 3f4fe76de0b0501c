"""`policy diff` counts the distinct shapes among its questions (each evaluated once per policy by the
memo keyed by shape) and asks one engine when both folders hold the same text."""
from __future__ import annotations

from service.kernel.catalog import AccountAction
from service.workbench.diff import profiles_of, run_diff


def test_the_diff_counts_shapes_and_asks_one_engine_for_the_same_text(config, monkeypatch):
    loaded = []
    import service.workbench.diff as diff

    class Counting(diff.Policy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loaded.append(self)

    monkeypatch.setattr(diff, "Policy", Counting)
    profile = profiles_of(config, ["ahcccs"])
    report = run_diff(config.policy_path, config.policy_path, profiles=profile, space_actions=[AccountAction.UNLOCK])
    assert report.changes == []
    assert 0 < report.shapes < report.evaluated  # the space asks some shapes more than once
    assert f"({report.shapes} distinct shapes)" in report.text()
    assert report.as_json()["shapes"] == report.shapes
    # Both folders are loaded (each must load), but the same text is asked through one engine:
    # its memo then holds each shape once.
    assert len(loaded) == 2
    assert loaded[0]._engine.memo_size() == report.shapes
    assert loaded[1]._engine.memo_size() == 0


def test_workers_sharing_a_diff_give_the_same_report(config, tmp_path, monkeypatch):
    """A diff shared among worker processes lists the same changes, in the same order, as one process."""
    import shutil

    import service.workbench.diff as diff

    new = tmp_path / "new"
    shutil.copytree(config.policy_path, new)
    portal = new / "portal.polar"
    portal.write_text(portal.read_text().replace(
        'status_allows("unlock", target: TargetAccount) if target.status = "locked";',
        'status_allows("unlock", target: TargetAccount) if target.status in ["locked", "disabled"];'))
    monkeypatch.setattr(diff, "PARALLEL_FROM", 100)  # the tables alone are then shared
    alone = run_diff(config.policy_path, new, jobs=1)
    shared = run_diff(config.policy_path, new, jobs=2)
    assert alone.changes and alone.evaluated >= 200
    assert shared.as_json()["changes"] == alone.as_json()["changes"]
    assert (shared.evaluated, shared.shapes, shared.summary) == (alone.evaluated, alone.shapes, alone.summary)

"""`make restore-drill`: the drill restores with the set's own restore.sh and checks the result
(rehearsed end to end on loopback: Ceph RGW, a MariaDB primary, backup.sh, the drill)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tools import restore_drill
from tools.testing.backup_box import ScriptBox, Store
from tools.testing.s3 import Radosgw

pytestmark = pytest.mark.real


def test_the_rehearsed_drill_restores_the_latest_backup_and_checks_it() -> None:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = restore_drill.main(["--rehearse", "--json"])
    report = json.loads(out.getvalue())
    assert code == 0 and report["ok"], report
    assert report["rows"] == {"app.drill": 1000} and report["tables_checked"] == 1
    assert report["backup_id"] and report["gtid_binlog_pos"].startswith("0-100-")


def test_a_drill_of_a_backup_that_does_not_exist_fails_with_the_reason(tmp_path: Path) -> None:
    rgw = Radosgw(tmp_path / "ceph").start()
    try:
        rgw.create_bucket("drill-empty")
        store = Store("drill-empty", "nothing/here", rgw.access_key, rgw.secret_key, endpoint=rgw.endpoint)
        report = restore_drill.drill(ScriptBox(tmp_path / "box", store), tmp_path / "scratch", "20260101T000000Z")
    finally:
        rgw.stop()
    assert not report.ok
    assert "no verified backup 20260101T000000Z" in report.problems[0]
    assert "restore-drill: FAILED" in report.render()


def test_without_a_bucket_or_a_key_the_drill_is_a_usage_error() -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = restore_drill.main(["--bucket", "b"], environ={})
    assert code == 2 and "AWS_ACCESS_KEY_ID" in err.getvalue()

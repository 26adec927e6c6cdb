"""``tieline users``: tokens are printed once, stored hashed, in a file only its owner reads."""

from __future__ import annotations

import json
import stat

from click.testing import CliRunner

from tieline.auth import Authenticator, User
from tieline.cli import main
from tieline.model import Permission


def test_users_add_and_remove(settings_dir):
    folder = settings_dir({"tieline.json": {
        "node": {"name": "n"}, "routers": [], "auth": {"users_file": "users.json"}}})
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "alice", "--level", "2", "--settings", str(folder)])
    assert added.exit_code == 0, added.output
    token = added.output.strip()
    path = folder / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (entry,) = json.loads(path.read_text())["users"]
    assert entry["name"] == "alice" and token not in path.read_text()
    auth = Authenticator([User(entry["name"], Permission(entry["level"]), entry["token_sha256"])])
    assert auth.authenticate(token, "192.0.2.1").name == "alice"
    assert runner.invoke(main, ["validate", "--settings", str(folder)]).exit_code == 0
    removed = runner.invoke(main, ["users", "remove", "alice", "--settings", str(folder)])
    assert removed.exit_code == 0
    assert json.loads(path.read_text()) == {"users": []}
    missing = runner.invoke(main, ["users", "remove", "bob", "--settings", str(folder)])
    assert missing.exit_code == 1 and "no user 'bob'" in missing.output

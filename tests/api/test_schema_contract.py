"""The API keeps its own contract: schemathesis (all checks, a bounded and derandomized number of
examples) against a live server on the test database, seeded with a settled market, a staff token
and a participant token. No 5xx, every response valid against the schema, every status code
documented, schema-valid requests accepted and schema-violating ones rejected."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from netting.fees import bank_charge_pass_on
from netting.models import NettedInstruction
from tests import factories
from tests.conftest import token_client
from tests.factories import ACTOR
from tests.netting.conftest import FiatMarket, trades_settle
from tests.netting.conftest import fiat_market as _fiat_market_fixture  # noqa: F401 (registers the fixture)

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# per operation and phase; raise it (e.g. SCHEMATHESIS_MAX_EXAMPLES=100) for a deeper run
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))


def _token(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"]


def _schemathesis(url: str, authorization: str, workdir: Path) -> subprocess.Popen:
    """A schemathesis run in the background, in ``workdir`` (it keeps a cache in its working
    directory), its output in ``workdir/out.txt``."""
    command = [
        str(ST),
        f"--config-file={CONFIG}",
        "run",
        f"{url}/api/schema/",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        "--seed=20261201",
        "--generation-deterministic",
        "--workers=1",
        "--no-color",
        "--request-timeout=30",
        f"--header=Authorization: {authorization}",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    workdir.mkdir()
    with (workdir / "out.txt").open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)  # noqa: S603


def _schema(url: str, authorization: str) -> None:
    request = urllib.request.Request(f"{url}/api/schema/", headers={"Authorization": authorization})  # noqa: S310
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - the live test server
        assert response.status == 200


def _finished(run: subprocess.Popen, workdir: Path, deadline: float) -> tuple[int, str]:
    """The exit status and output of a run (killed, status -9, when it is still going at ``deadline``)."""
    try:
        code = run.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        run.kill()
        code = run.wait()
    return code, (workdir / "out.txt").read_text(errors="replace")


@pytest.fixture
def seeded_market(request, staff_user, settings):
    # given: a settled market (trades, legs, windows, net payments, fees) and tokens for both kinds of caller
    settings.CLEARHOUSE_API_RATE = "100000/min"
    m: FiatMarket = request.getfixturevalue("_fiat_market_fixture")
    p = m.parties
    trades_settle(m, [(p[0], p[1], "10", "100.00"), (p[2], p[1], "5", "50.00")], source="api")
    # a pass-through bank charge: a fee without a rule (its "rule" is null)
    payment = NettedInstruction.objects.filter(participant=p[0]).order_by("pk").first()
    bank_charge_pass_on(ni=payment, fee=Decimal("1.50"), external_key="BOOKING-1", source="camt.053", actor=ACTOR)
    staff = token_client(staff_user)
    participant = token_client(factories.participant_user(p[0]))
    return _token(staff), _token(participant)


def test_api_contract_holds_for_staff_and_participants(seeded_market, live_server, tmp_path):
    staff, participant = seeded_market
    # when: schemathesis runs every check against every operation, as staff and as a participant
    # (both runs at once, against the live server's threads, each in a directory of its own)
    callers = {"staff": staff, "participant": participant}
    for token in callers.values():  # the schema once per caller first, one at a time: drf-spectacular's
        _schema(live_server.url, token)  # lazy first generation (its contrib imports) is not thread-safe
    runs = {}
    for who, token in callers.items():
        runs[who] = _schemathesis(live_server.url, token, tmp_path / who)
        time.sleep(2)  # each run loads the schema as it starts: not both in the same instant
    deadline = time.monotonic() + 600
    results = {who: _finished(run, tmp_path / who, deadline) for who, run in runs.items()}
    # then: nothing failed
    failed = {who: out[-24000:] for who, (code, out) in results.items() if code != 0}
    assert not failed, "\n\n".join(f"=== as {who} ===\n{out}" for who, out in failed.items())

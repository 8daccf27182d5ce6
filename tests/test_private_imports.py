"""scripts/check_private_imports.py: no package uses another package's private names."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_private_imports", ROOT / "scripts" / "check_private_imports.py")
assert _spec is not None and _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # (its dataclass looks its module up)
_spec.loader.exec_module(check)

SAMPLE = """
import settlement.services.trades
import netting._internal
from settlement.services.trades import _history_rows, TradeInput
from settlement.services import trades as t
from settlement.services import trades
from os import _exit
from common.money import __doc__
from netting.services import window_close


def f():
    from ledger.services.ledger import _journal_write
    return t._helper, trades._other.public, settlement.services.trades._rows, window_close._cache
"""


def uses(source, module="reconciliation.admin"):
    is_module = {"settlement.services.trades"}.__contains__
    found = check.source_violations(source, module=module, path="x.py", is_module=is_module)
    return sorted((v.line, v.name) for v in found)


def test_it_catches_private_names_of_other_packages_imported_or_reached_through_a_module():
    assert uses(SAMPLE) == [
        (3, "netting._internal"),
        (4, "settlement.services.trades._history_rows"),
        (13, "ledger.services.ledger._journal_write"),
        (14, "settlement.services.trades._helper"),
        (14, "settlement.services.trades._other"),
        (14, "settlement.services.trades._rows"),
    ]


def test_a_package_may_use_its_own_private_names_and_dunders_and_outside_names_are_not_judged():
    assert uses(SAMPLE, module="netting.admin") == [
        (4, "settlement.services.trades._history_rows"),
        (13, "ledger.services.ledger._journal_write"),
        (14, "settlement.services.trades._helper"),
        (14, "settlement.services.trades._other"),
        (14, "settlement.services.trades._rows"),
    ]
    assert uses("from settlement.services.trades import _history_rows\n", module="settlement.api.views") == []


def test_the_project_uses_no_other_package_private_names():
    assert check.project_violations() == []

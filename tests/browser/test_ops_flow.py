"""The operations console in a real browser (Debian's headless Chromium driven by Selenium):
an operator escalates a failed instruction and proposes a reversal, an approver approves it,
and the dashboard's numbers move. Screenshots of each step go to var/test-artifacts/browser/."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from ops.models import ApprovalRequest, ReviewCase
from settlement.services.instructions import instruction_fail, trade_settle_internal
from tests import factories
from tests.factories import ACTOR

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts" / "browser"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
        reason="Debian chromium + chromium-driver not installed (make test installs them)",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


class Console:
    def __init__(self, driver, base: str) -> None:
        self.driver, self.base, self.shots = driver, base, 0

    def shot(self, name: str) -> None:
        self.shots += 1
        self.driver.save_screenshot(str(ARTIFACTS / f"{self.shots:02d}-{name}.png"))

    def login(self, username: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.delete_all_cookies()
        self.driver.get(f"{self.base}/admin/login/")
        self.driver.find_element(By.ID, "id_username").send_keys(username)
        self.driver.find_element(By.ID, "id_password").send_keys("pw")
        self.submit(self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]"))
        # the admin's logout form is on every page of a logged-in user (waits for it to load)
        assert self.driver.find_element(By.ID, "logout-form")

    def submit(self, button) -> None:
        """Click and wait until the next page replaced this one (a click does not wait for it)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def replaced(_driver) -> bool:
            # Chromium reports a node of a page already gone either as stale or, while the new page
            # is being attached, as "does not belong to the document": both mean the page moved on
            try:
                button.is_enabled()
            except WebDriverException:
                return True
            return False

        button.click()
        WebDriverWait(self.driver, 15).until(replaced)

    def action(self, changelist: str, pk: int, action: str, reason: str) -> str:
        """Tick one row, run an action, give the reason; returns the resulting page."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        self.driver.get(f"{self.base}/admin/{changelist}/")
        self.driver.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{pk}']").click()
        Select(self.driver.find_element(By.NAME, "action")).select_by_value(action)
        self.submit(self.driver.find_element(By.NAME, "index"))
        self.driver.find_element(By.ID, "reason").send_keys(reason)
        self.shot(f"{action}-reason")
        self.submit(self.driver.find_element(By.NAME, "apply"))
        return self.driver.page_source

    def dashboard(self, name: str) -> dict[str, str]:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.base}/admin/dashboard/")
        self.shot(name)
        cells = self.driver.find_elements(By.CSS_SELECTOR, "#by-status td[data-status]")
        figures = {cell.get_attribute("data-status"): cell.text for cell in cells}
        figures["pending-approvals"] = self.driver.find_element(By.ID, "pending-approvals").text
        figures["review"] = self.driver.find_element(By.ID, "review").text
        return figures


def test_operator_escalates_and_proposes_approver_approves_dashboard_moves(
    browser, live_server, django_user_model, usd, btc, alice, bob
):
    factories.fund(alice, usd, Decimal("1000.00"))
    factories.fund(bob, btc, Decimal("2"))
    instrument = factories.instrument(btc, usd)
    settled = factories.trade(
        instrument=instrument, buyer=alice, seller=bob, quantity="1", price="100", external_id="B1"
    )
    trade_settle_internal(trade=settled, actor=ACTOR)
    failing = factories.trade(
        instrument=instrument, buyer=alice, seller=bob, quantity="9", price="100", external_id="B2"
    )
    failed_leg = failing.instructions.get(leg="payment")
    instruction_fail(instruction=failed_leg, actor=ACTOR, reason="insufficient funds")
    from django.contrib.auth.models import Group

    for name, role in (("olga", "operator"), ("arne", "approver")):
        user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
        user.groups.set([Group.objects.get(name=role)])

    console = Console(browser, live_server.url)
    console.login("olga")
    before = console.dashboard("dashboard-before")
    assert (before["failed"], before["settled"], before["reversed"]) == ("1", "2", "0")
    assert before["pending-approvals"] == "0"

    page = console.action("settlement/settlementinstruction", failed_leg.pk, "escalate_selected", "customer disputes")
    assert "Escalate: 1" in page
    console.shot("escalated")
    page = console.action(
        "settlement/settlementinstruction",
        settled.instructions.get(leg="delivery").pk,
        "reverse_selected",
        "trade busted by the venue",
    )
    console.shot("reversal-proposed")
    assert ApprovalRequest.objects.get().status == "pending"
    middle = console.dashboard("dashboard-proposed")
    assert middle["pending-approvals"] == "1" and "escalation" in middle["review"]

    # the operator is not offered approval; the approver is
    browser.get(f"{live_server.url}/admin/ops/approvalrequest/")
    assert "approve_selected" not in browser.page_source
    console.login("arne")
    page = console.action(
        "ops/approvalrequest", ApprovalRequest.objects.get().pk, "approve_selected", "venue confirmed"
    )
    console.shot("approved")
    after = console.dashboard("dashboard-after")
    assert (after["settled"], after["reversed"], after["pending-approvals"]) == ("0", "2", "0")
    assert ReviewCase.objects.filter(kind="escalation", instruction=failed_leg).exists()
    assert len(list(ARTIFACTS.glob("*.png"))) >= 7

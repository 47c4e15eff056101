"""The dashboard in a real browser (Debian's Chromium, driven by Playwright), against a
real daemon: a chat turn, a request held for approval and allowed from the page, and a
broken policy file shown until it is fixed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import acting_config, hc
from tests.cli.test_network_cli import ask_policy, background_curl, pending, web  # noqa: F401
from tests.conftest import wait_for

CHROMIUM = shutil.which("chromium")
# Where the tests leave their screenshots (not committed; docs/ keeps the README's copy).
ARTIFACTS = Path(__file__).parents[2] / "tests" / "artifacts"
ARTIFACTS.mkdir(exist_ok=True)
playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
]


@pytest.fixture
def page(daemon_home: Paths) -> Iterator[playwright.Page]:
    assert hc(daemon_home, "up").returncode == 0
    url = hc(daemon_home, "dashboard").stdout.strip()  # the URL, token in the fragment
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()
        tab.set_default_timeout(30_000)
        tab.goto(url)
        yield tab
        browser.close()


def test_a_chat_turn_in_the_page(page: playwright.Page) -> None:
    page.fill("#text", "Bonjour?")
    page.press("#text", "Enter")
    playwright.expect(page.locator(".msg.user")).to_have_text("Bonjour?")
    playwright.expect(page.locator(".msg.reply")).to_have_text("Bonjour!")


def test_a_held_request_is_allowed_from_the_page(
    page: playwright.Page,
    daemon_home: Paths,
    web: int,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert hc(daemon_home, "sandbox", "create", "net").returncode == 0
    assert hc(daemon_home, "policy", "set", str(ask_policy(tmp_path, web))).returncode == 0
    curl = background_curl(daemon_home, web)
    card = page.locator(".approval")
    playwright.expect(card).to_contain_text(f"Sandbox net asks to reach localhost:{web} (rule ask-local)")
    playwright.expect(card).to_contain_text(
        f"network rule approved-localhost-{web} (hosts: ['localhost'], ports: [{web}]"
    )
    card.get_by_role("button", name="Allow once").click()
    out, err = curl.communicate(timeout=60)
    assert (curl.returncode, out) == (0, "hello\n"), err
    playwright.expect(card).to_have_count(0)  # decided: gone from the page
    assert pending(daemon_home) == []
    audit = json.loads(hc(daemon_home, "audit", "--sandbox", "net", "--json").stdout)["entries"]
    assert ("network", "allowed") in [(e["action"], e["outcome"]) for e in audit]


def test_a_broken_policy_file_is_shown_until_fixed(page: playwright.Page, daemon_home: Paths) -> None:
    banner = page.locator("#policy-error")
    playwright.expect(banner).to_be_hidden()
    good = daemon_home.policy.read_text()
    daemon_home.policy.write_text("version: 1\nnetwork:\n  default: allow\n")
    playwright.expect(banner).to_be_visible()
    playwright.expect(banner).to_contain_text("the last good policy stays in force")
    playwright.expect(banner).to_contain_text("network.default")
    daemon_home.policy.write_text(good)
    playwright.expect(banner).to_be_hidden()
    wait_for(lambda: not json.loads(hc(daemon_home, "status", "--json").stdout)["policy_error"])


def test_a_held_tool_call_is_shown_and_allowed_from_the_page(daemon_home: Paths) -> None:
    daemon_home.config.write_text(acting_config("exec", {"command": "touch from-the-page"}, "Done."))
    daemon_home.policy.write_text(daemon_home.policy.read_text().replace("  ask: []", "  ask: [exec]"))
    assert hc(daemon_home, "up").returncode == 0
    url = hc(daemon_home, "dashboard").stdout.strip()
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()
        tab.set_default_timeout(30_000)
        tab.goto(url)
        tab.fill("#text", "Touch it, please.")
        tab.press("#text", "Enter")
        card = tab.locator(".approval")
        playwright.expect(card).to_contain_text("Agent main wants to run exec: touch from-the-page")
        playwright.expect(card).to_contain_text("the policy asks a person first (tools.ask: exec)")
        playwright.expect(card).to_contain_text(
            '"Always allow" adds to the policy: tools.allow: exec=touch from-the-page'
        )
        card.get_by_role("button", name="Allow once").click()
        playwright.expect(tab.locator(".msg.reply")).to_have_text("Done.")
        playwright.expect(tab.locator(".msg.tool").first).to_contain_text("→ exec")
        browser.close()
    assert (daemon_home.workspace / "from-the-page").exists()


def test_the_token_becomes_an_httponly_cookie_and_never_travels_in_a_url(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    url = hc(daemon_home, "dashboard").stdout.strip()
    token = daemon_home.read_token()
    base = url.split("#", 1)[0].rstrip("/")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        addresses: list[str] = []
        tab.on("request", lambda request: addresses.append(request.url))
        tab.on("websocket", lambda socket: addresses.append(socket.url))
        tab.goto(url)
        tab.fill("#text", "Bonjour?")
        tab.press("#text", "Enter")
        playwright.expect(tab.locator(".msg.reply")).to_have_text("Bonjour!")
        assert token not in tab.url  # the fragment is gone from the address bar
        assert any("/ws" in a for a in addresses) and not [a for a in addresses if token in a]
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
        seen_by_scripts = tab.evaluate(
            "document.cookie + JSON.stringify({...sessionStorage, ...localStorage})"
        )
        assert cookie["value"] not in seen_by_scripts and token not in seen_by_scripts

        # A new browser, no address with a token: the sign-in form, labelled, asks once.
        fresh = browser.new_page()
        fresh.set_default_timeout(30_000)
        fresh.goto(base + "/")
        field = fresh.get_by_label("Gateway token")
        playwright.expect(field).to_be_visible()
        field.fill("not-the-token")
        fresh.get_by_role("button", name="Sign in").click()
        playwright.expect(fresh.get_by_role("alert")).to_have_text("That is not the gateway's token.")
        field.fill(token)
        fresh.get_by_role("button", name="Sign in").click()
        playwright.expect(fresh.locator("#login")).to_be_hidden()
        playwright.expect(fresh.locator("#status")).to_contain_text("pid")
        fresh.set_viewport_size({"width": 1200, "height": 700})
        fresh.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"))
        browser.close()


def test_a_phone_screen_keeps_the_conversation_and_the_input(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    url = hc(daemon_home, "dashboard").stdout.strip()
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.set_default_timeout(30_000)
        phone.goto(url)
        phone.get_by_label("Message").fill("Bonjour?")
        phone.get_by_label("Message").press("Enter")
        playwright.expect(phone.locator(".msg.reply")).to_have_text("Bonjour!")
        # Nothing wider than the screen, and the input and its button wholly on it.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        for box in (
            phone.get_by_label("Message").bounding_box(),
            phone.get_by_role("button", name="Send").bounding_box(),
        ):
            assert (
                box is not None
                and box["x"] >= 0
                and box["x"] + box["width"] <= 390
                and box["y"] + box["height"] <= 844
            )
        log = phone.get_by_role("log", name="Conversation").bounding_box()
        assert (
            log is not None and log["width"] >= 350 and log["height"] >= 400
        )  # the sessions do not cover it
        # The sessions are a menu away, said to a screen reader as such.
        menu = phone.get_by_role("button", name="Sessions")
        playwright.expect(menu).to_have_attribute("aria-expanded", "false")
        playwright.expect(phone.get_by_role("button", name="+ new session")).to_be_hidden()
        menu.click()
        playwright.expect(menu).to_have_attribute("aria-expanded", "true")
        playwright.expect(phone.get_by_role("button", name="web", exact=True)).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"))
        browser.close()


def test_the_pages_audit_policy_jobs_usage_and_sandboxes(page: playwright.Page, daemon_home: Paths) -> None:
    assert hc(daemon_home, "sandbox", "create", "net").returncode == 0
    assert hc(daemon_home, "cron", "add", "Check the backups", "--every", "6h").returncode == 0
    page.fill("#text", "Bonjour?")
    page.press("#text", "Enter")
    playwright.expect(page.locator(".msg.reply")).to_have_text("Bonjour!")

    page.get_by_role("button", name="Audit log").click()
    rows = page.locator("#view tbody tr")
    playwright.expect(rows.filter(has_text="sandbox.create")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"))
    page.get_by_label("Action").select_option("sandbox.create")
    playwright.expect(rows).to_have_count(1)
    page.get_by_label("Containing").fill("no such thing at all")
    playwright.expect(rows).to_have_count(0)

    # A bad edit is refused with its error shown, and nothing changes; a good one applies.
    page.get_by_role("button", name="Policy").click()
    editor = page.get_by_label("Policy file")
    good = daemon_home.policy.read_text()
    playwright.expect(editor).to_have_value(good)
    editor.fill("version: 1\nnetwork:\n  default: allow\n")
    page.get_by_role("button", name="Check and apply").click()
    outcome = page.locator("#policy-outcome")
    playwright.expect(outcome).to_contain_text("network.default")
    playwright.expect(outcome).to_contain_text("nothing changed")
    assert daemon_home.policy.read_text() == good
    editor.fill(good + "# edited on the dashboard\n")
    page.get_by_role("button", name="Check and apply").click()
    playwright.expect(outcome).to_contain_text("Applied (version")
    assert daemon_home.policy.read_text().endswith("# edited on the dashboard\n")

    page.get_by_role("button", name="Scheduled jobs").click()
    playwright.expect(page.locator("#view")).to_contain_text("Check the backups")
    page.get_by_role("button", name="Usage").click()
    playwright.expect(page.get_by_role("img", name="Tokens a day, the last 30 days")).to_be_visible()
    playwright.expect(page.locator("#view")).to_contain_text("By agent")
    page.get_by_role("button", name="Sandboxes").click()
    playwright.expect(page.locator("#view tbody tr").filter(has_text="net")).to_contain_text("running")
    page.get_by_role("button", name="Chat").click()
    playwright.expect(page.locator(".msg.reply")).to_have_text("Bonjour!")


def test_a_pairing_code_is_approved_and_revoked_from_the_page(home: Paths) -> None:
    from hermitcrab.egress.secrets import Secret, SecretStore
    from tests.channels.fake_telegram import TOKEN, FakeTelegram
    from tests.channels.test_telegram import channel_config, code_for
    from tests.conftest import SCRIPTED_CONFIG, free_port

    fake = FakeTelegram()
    server = fake.serve()
    config = SCRIPTED_CONFIG.format(port=free_port(), replies='["Bonjour!"]') + channel_config(fake)
    home.config.write_text(config)
    SecretStore(home.secrets).set(Secret("telegram", TOKEN))
    assert hc(home, "up").returncode == 0
    try:
        fake.say(333, "hello?", name="ana")
        code = code_for(fake, 333)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            tab = browser.new_page()
            tab.set_default_timeout(30_000)
            tab.goto(hc(home, "dashboard").stdout.strip())
            tab.get_by_role("button", name="Channels and pairing").click()
            playwright.expect(tab.locator("#view table").first).to_contain_text("connected")
            tab.get_by_role("button", name=f"Approve {code} as owner").click()
            revoke = tab.get_by_role("button", name="Revoke 333")
            playwright.expect(revoke).to_be_visible()  # the page drawn again: now paired
            playwright.expect(tab.locator("#view")).to_contain_text("Nobody is waiting.")
            wait_for(lambda: any("You are paired (owner)" in t for t in fake.to(333)), what="the welcome")
            tab.screenshot(path=str(ARTIFACTS / "dashboard-pairing.png"), full_page=True)
            revoke.click()
            playwright.expect(tab.locator("#view")).to_contain_text("Nobody is paired.")
            browser.close()
        listed = json.loads(hc(home, "pairing", "list", "--json").stdout)
        (sender,) = listed["senders"]
        assert sender["state"] == "revoked" and sender["decided_by"] == "dashboard"
    finally:
        hc(home, "down")
        server.should_exit = True

#!/usr/bin/env python3
"""The security-info pages in a real browser: Debian's Chromium, headless, driven through
chromedriver by Selenium, against a running `portvakt serve` on loopback.

    walk.py --base https://localhost:PORT --outbox FILE --admin-key FILE \
            --portvakt BIN --data DIR [--shots DIR]

What it does, each step checked on the page itself:
  1. a first registration: a ticket, an authenticator app set up from its QR code (read
     back from a screenshot with zbarimg) and proved with a code from oathtool, a phone
     confirmed with the code the server delivered, the phone made the default; and the
     sign-in decision sees both at once;
  2. the sixth authenticator app refused in plain words, then one deleted and re-added;
  3. a second visit: nothing changes before a second factor (a wrong code refused, a code
     sent to the phone accepted);
  4. a ticket used twice, a ticket for another name, and an expired ticket, refused;
  5. a form with a wrong CSRF token, and a form from another origin, refused, with
     nothing changed;
  6. the pages in Norwegian;
  7. app notifications: the reference authenticator (`portvakt authenticator`) pairs from
     the QR code on the page, and the page and sign-in both say a second method is due;
     with --server-cert, the app's notification as the second factor (a wrong number
     refused), and a security key registered and then used through the browser's
     WebAuthn with a virtual authenticator;
  8. the audit trail names the person and where they were.

Exits non-zero at the first thing that is not as it should be. Screenshots of each page
go to --shots (docs/security-info/ keeps the ones people look at).
"""

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions
from selenium.webdriver.support.ui import WebDriverWait

TENANT = "kommune"


class Walk:
    def __init__(self, args):
        self.base = args.base.rstrip("/")
        self.outbox = args.outbox
        self.admin_key = open(args.admin_key).read().strip()
        self.shots = args.shots
        self.ticket_ttl = args.ticket_ttl
        self.portvakt = args.portvakt
        self.data = args.data
        self.ctx = ssl.create_default_context()
        # The development CA's server certificate; the walk is about the pages, and the
        # browser is told to take it too.
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.profile = tempfile.mkdtemp(prefix="portvakt-chromium-")
        self.device_key = os.path.join(self.profile, "device.key")
        options = webdriver.ChromeOptions()
        options.binary_location = args.chromium
        for a in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,900",
            "--lang=en-GB",
            f"--user-data-dir={self.profile}",
        ]:
            options.add_argument(a)
        options.accept_insecure_certs = True
        # WebAuthn refuses a page with a certificate error: the server's certificate (the
        # development CA's) is taken as good by its public key instead.
        self.webauthn = args.server_cert is not None
        if self.webauthn:
            options.add_argument(f"--ignore-certificate-errors-spki-list={spki_hash(args.server_cert)}")
        self.d = webdriver.Chrome(service=Service(args.chromedriver), options=options)
        self.d.set_page_load_timeout(30)

    def close(self):
        self.d.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the server's APIs, as a frontend and an administrator call them -------------

    def api(self, path, body, key=None):
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        req = urllib.request.Request(
            self.base.replace("localhost", "127.0.0.1") + path,
            data=json.dumps(body).encode(),
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, context=self.ctx) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def ticket(self, user):
        status, body = self.api("/v1/security-info/ticket", {"tenant": TENANT, "user": user})
        check(status == 200, f"a ticket: {status} {body}")
        check(body["url"].startswith(self.base + "/security-info/start?ticket="), body["url"])
        return body["url"]

    def decide(self, user, ip="203.0.113.9"):
        status, body = self.api("/v1/decide", {"tenant": TENANT, "user": user, "ip": ip})
        check(status == 200, f"a decision: {status} {body}")
        return body

    def sent_code(self, destination):
        """The newest code the server handed the delivery gateway for `destination`."""
        for _ in range(50):
            if os.path.exists(self.outbox):
                lines = [json.loads(l) for l in open(self.outbox) if l.strip()]
                mine = [l for l in lines if l["destination"] == destination]
                if mine:
                    return mine[-1]["code"], len(mine)
            time.sleep(0.1)
        fail(f"no code in {self.outbox} for {destination}")

    # --- the browser -----------------------------------------------------------------

    def shot(self, name):
        if self.shots:
            self.d.save_screenshot(os.path.join(self.shots, name + ".png"))

    def main_text(self):
        return self.d.find_element(By.TAG_NAME, "main").text

    def see(self, text):
        body = self.main_text()
        check(text in body, f"{text!r} is not on {self.d.current_url}:\n{body}")

    def not_see(self, text):
        body = self.main_text()
        check(text not in body, f"{text!r} is on {self.d.current_url}:\n{body}")

    def click(self, css):
        self.navigate(lambda: self.d.find_element(By.CSS_SELECTOR, css).click())

    def link(self, text):
        self.navigate(lambda: self.d.find_element(By.PARTIAL_LINK_TEXT, text).click())

    def navigate(self, act):
        """Does `act` (a click that loads a page) and waits for the new page."""
        for attempt in range(3):
            try:
                old = self.d.find_element(By.TAG_NAME, "html")
                act()
                break
            except WebDriverException as e:
                # The element was found in a page being replaced, before any click
                # reached it: find it again in the page that is there now.
                gone = isinstance(e, StaleElementReferenceException) or (
                    "does not belong to the document" in str(e)
                )
                if attempt == 2 or not gone:
                    raise
                time.sleep(0.2)
        WebDriverWait(self.d, 20).until(lambda _: detached(old))
        WebDriverWait(self.d, 20).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def fill(self, css, value):
        e = self.d.find_element(By.CSS_SELECTOR, css)
        e.clear()
        e.send_keys(value)

    def open_ticket(self, url, shot=None):
        self.d.delete_all_cookies()
        self.d.get(url)
        self.see("Continue to see and change")
        if shot:
            self.shot(shot)
        self.click("main button[type=submit]")

    def rows(self):
        return [
            r.text
            for r in self.d.find_elements(By.CSS_SELECTOR, "main table tbody tr")
        ]

    def add(self, kind):
        self.d.get(self.base + "/security-info")
        self.link("Add method")
        self.d.find_element(By.CSS_SELECTOR, f"#kind-{kind}").click()
        self.click("main button[type=submit]")

    def add_app(self, shot=None):
        """Adds an authenticator app from its QR code; returns its secret."""
        self.add("app")
        self.see("Set up your authenticator app")
        qr = self.d.find_element(By.CSS_SELECTOR, "img.qr")
        png = os.path.join(self.profile, "qr.png")
        qr.screenshot(png)
        if shot:
            self.shot(shot)
        uri = subprocess.run(
            ["zbarimg", "--quiet", "--raw", png], capture_output=True, text=True, check=True
        ).stdout.strip()
        check(uri.startswith("otpauth://totp/"), f"the QR code reads {uri!r}")
        secret = re.search(r"[?&]secret=([A-Z2-7]+)", uri).group(1)
        shown = self.d.find_element(By.ID, "secret").text.replace(" ", "")
        check(shown == secret, f"the secret shown {shown} is not the QR code's {secret}")
        self.fill("#code", oathtool(secret))
        self.click("main form button[type=submit]")
        return secret

    def problem(self):
        found = self.d.find_elements(By.CSS_SELECTOR, "main .problem")
        return found[0].text if found else ""

    def notice(self):
        found = self.d.find_elements(By.CSS_SELECTOR, "main .notice")
        return found[0].text if found else ""


def spki_hash(pem_file):
    """Base64 of the SHA-256 of the certificate's public key, as Chromium's flag wants it."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(open(pem_file, "rb").read())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def detached(element):
    """Whether `element` has left the page (the page it was in has been replaced)."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        # Chromium sometimes says so in its own words.
        if "does not belong to the document" in str(e):
            return True
        raise


def oathtool(secret, offset=0):
    cmd = ["oathtool", "--totp", "-b", secret]
    if offset:
        cmd += ["-N", f"now + {offset} seconds"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def check(ok, what):
    if not ok:
        fail(what)


def fail(what):
    print(f"FAILED: {what}", file=sys.stderr)
    raise SystemExit(1)


def step(what):
    print(f"== {what}", flush=True)


def first_registration(w):
    step("a first registration: ticket, app from its QR code, phone, default")
    user = "kari@kommune.no"
    before = w.decide(user)
    check(before["outcome"] == "register", f"before: {before}")
    url = w.ticket(user)
    w.open_ticket(url, shot="01-start")
    check(w.d.current_url == w.base + "/security-info", w.d.current_url)
    w.see("You have no methods yet")
    w.shot("02-empty")
    cookies = {c["name"]: c for c in w.d.get_cookies()}
    c = cookies.get("__Host-portvakt-session")
    check(c is not None, f"no session cookie: {cookies}")
    check(c["secure"] and c["httpOnly"] and c["sameSite"] == "Strict", f"the cookie: {c}")
    check(w.d.execute_script("return document.cookie") == "", "script can read the cookie")

    w.d.get(w.base + "/security-info")
    w.link("Add method")
    w.see("Which method would you like to add?")
    w.see("Password reset only")
    w.shot("03-add")
    secret = w.add_app(shot="04-app")
    check(w.notice() == "Your authenticator app was added.", w.notice())
    check(len(w.rows()) == 1 and "Authenticator app" in w.rows()[0], w.rows())
    check("Default" in w.rows()[0], f"the first method is not the default: {w.rows()}")
    w.see("Your organisation asks you to register at least 2 methods")

    w.add("phone")
    w.see("Add a phone")
    w.fill("#number", "+47 912 34 567")
    w.shot("05-phone")
    w.click("main form button[type=submit]")
    w.see("Enter the code")
    w.see("•••• 67")
    w.shot("06-confirm")
    code, _ = w.sent_code("+4791234567")
    w.fill("#code", code)
    w.click("main form button[type=submit]")
    check(w.notice() == "Your method was added.", w.notice() or w.problem())
    rows = w.rows()
    check(len(rows) == 2 and "Phone (text message)" in rows[1] and "•••• 67" in rows[1], rows)
    w.not_see("asks you to register at least")

    w.link("Change")
    w.see("Which method should we ask for first")
    w.shot("07-default")
    w.d.find_element(By.CSS_SELECTOR, "main input[type=radio]:not(:checked)").click()
    w.click("main form button[type=submit]")
    check(w.notice() == "Your default method was changed.", w.notice())
    w.see("Default sign-in method: Phone (text message) •••• 67")
    w.shot("08-registered")

    # The next sign-in sees it at once: a second factor, by SMS first.
    after = w.decide(user)
    check(after["outcome"] == "challenge", f"after: {after}")
    kinds = [m["kind"] for m in after["methods"]]
    check(kinds[0] == "sms" and "authenticator_app" in kinds, f"after: {after}")
    return secret


def sixth_app_and_readding(w):
    step("five apps, the sixth refused; one deleted and added again")
    user = "ola@kommune.no"
    w.open_ticket(w.ticket(user))
    for n in range(5):
        w.add_app()
        check(w.notice() == "Your authenticator app was added.", f"app {n + 1}: {w.problem()}")
    check(len(w.rows()) == 5, w.rows())
    w.add("app")
    check(w.d.current_url == w.base + "/security-info/add", w.d.current_url)
    check(
        w.problem().startswith(
            "You can't set up another authenticator app because you already have five"
        ),
        w.problem(),
    )
    w.shot("09-sixth-refused")
    w.d.get(w.base + "/security-info")
    check(len(w.rows()) == 5, w.rows())

    w.navigate(lambda: w.d.find_elements(By.LINK_TEXT, "Delete")[2].click())
    w.see("Delete this method?")
    w.see("Also remove the account from the app on your phone.")
    w.shot("10-delete")
    w.click("main button.danger")
    check(w.notice() == "The method was deleted.", w.notice())
    check(len(w.rows()) == 4, w.rows())
    w.add_app()
    check(w.notice() == "Your authenticator app was added.", w.problem())
    check(len(w.rows()) == 5, w.rows())


def second_visit_needs_second_factor(w):
    step("a second visit: a second factor before any change")
    user = "kari@kommune.no"
    w.open_ticket(w.ticket(user))
    check(w.d.current_url == w.base + "/security-info/verify", w.d.current_url)
    w.see("Verify it is you")
    w.shot("11-verify")
    # Nothing else opens: not the list, not a change.
    for path in ["/security-info", "/security-info/add", "/security-info/default"]:
        w.d.get(w.base + path)
        check(w.d.current_url == w.base + "/security-info/verify", f"{path}: {w.d.current_url}")
    csrf = w.d.find_element(By.NAME, "csrf").get_attribute("value")
    w.navigate(lambda: w.d.execute_script(
        """const f = document.createElement('form'); f.method = 'post';
        f.action = '/security-info/delete';
        for (const [k, v] of [['csrf', arguments[0]], ['method', '1']]) {
          const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit();""",
        csrf,
    ))
    check(w.d.current_url == w.base + "/security-info/verify", w.d.current_url)
    check(len(w.decide(user)["methods"]) == 2, "a method was deleted before the second factor")

    w.fill("#code", "000000")
    w.click("main form button[type=submit]")
    check(w.problem() == "That code did not work. Check it and try again.", w.problem())
    verify_by_phone(w)
    check(len(w.rows()) == 2, w.rows())


def verify_by_phone(w):
    """On the verify page: a code sent to Kari's phone, typed in."""
    _, sent_before = w.sent_code("+4791234567")
    w.click("main form.inline button")
    w.see("We sent a code to")
    code, sent_after = w.sent_code("+4791234567")
    check(sent_after == sent_before + 1, "no new code was sent")
    w.fill("#code", code)
    w.click("main form button[type=submit]")
    check(w.d.current_url == w.base + "/security-info", w.d.current_url)


def tickets_refused(w):
    step("tickets: used twice, for another name, expired")
    url = w.ticket("per@kommune.no")
    w.open_ticket(url)
    check(w.d.current_url == w.base + "/security-info", w.d.current_url)
    w.open_ticket(url)
    w.see("This link does not open your security info.")
    w.shot("12-ticket-refused")
    check(w.d.get_cookies() == [], f"a refused ticket set {w.d.get_cookies()}")

    # Another name in the same ticket: the store's digest binds the name.
    url = w.ticket("per@kommune.no")
    import base64

    raw = url.split("ticket=")[1]
    b = bytearray(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    b[-1] = ord("x")
    forged = base64.urlsafe_b64encode(bytes(b)).decode().rstrip("=")
    w.open_ticket(url.split("ticket=")[0] + "ticket=" + forged)
    w.see("This link does not open your security info.")
    # ... and the forgery spent it.
    w.open_ticket(url)
    w.see("This link does not open your security info.")

    url = w.ticket("per@kommune.no")
    time.sleep(w.ticket_ttl + 1.5)
    w.open_ticket(url)
    w.see("This link does not open your security info.")


def forged_forms_refused(w):
    step("forms with a wrong CSRF token or from another origin")
    w.open_ticket(w.ticket("kari@kommune.no"))
    verify_by_phone(w)
    before = w.rows()
    w.navigate(lambda: w.d.find_elements(By.LINK_TEXT, "Delete")[0].click())
    w.d.execute_script("document.querySelector('main input[name=csrf]').value = 'forged'")
    w.click("main button.danger")
    w.see("This form was not sent from your own security info page")
    w.shot("13-csrf-refused")
    w.d.get(w.base + "/security-info")
    check(w.rows() == before, f"{before} became {w.rows()}")

    # A page elsewhere posting to the pages: no Origin of ours, no cookie (SameSite).
    csrf = w.d.find_element(By.NAME, "csrf").get_attribute("value")
    page = (
        "<form method=post action='" + w.base + "/security-info/delete'>"
        f"<input name=csrf value='{csrf}'><input name=method value=1>"
        "<button>go</button></form>"
    )
    w.d.get("data:text/html," + urllib.parse.quote(page))
    w.navigate(lambda: w.d.find_element(By.TAG_NAME, "button").click())
    w.see("This form was not sent from your own security info page")
    w.d.get(w.base + "/security-info")
    check(w.rows() == before, f"{before} became {w.rows()}")


def app_notifications(w):
    step("app notifications: pair the reference authenticator from the page's QR code")
    user = "lise@kommune.no"
    w.open_ticket(w.ticket(user))
    w.add("push")
    w.see("Set up app notifications")
    png = os.path.join(w.profile, "push.png")
    w.d.find_element(By.CSS_SELECTOR, "img.qr").screenshot(png)
    w.shot("15-push")
    uri = subprocess.run(
        ["zbarimg", "--quiet", "--raw", png], capture_output=True, text=True, check=True
    ).stdout.strip()
    check(uri.startswith("portvakt-push://enrol?"), f"the QR code reads {uri!r}")
    check(uri == w.d.find_element(By.CSS_SELECTOR, "code.wrap").text, "the URI shown")
    # Not paired yet: Check says so.
    w.click("main form button[type=submit]")
    check(w.problem() == "The app has not paired yet.", w.problem())
    subprocess.run(
        [w.portvakt, "authenticator", "--key", w.device_key, "--data", w.data, "enrol", uri],
        check=True,
        capture_output=True,
    )
    w.click("main form button[type=submit]")
    check(w.notice() == "App notifications were set up.", w.notice() or w.problem())
    check(len(w.rows()) == 1 and "App notification" in w.rows()[0], w.rows())
    # The municipality asks for two methods: the page says so, and so does sign-in.
    w.see("Your organisation asks you to register at least 2 methods")
    d = w.decide(user)
    check(d["outcome"] == "register" and d["reason"] == "more_methods_required", f"{d}")


def security_key(w):
    step("second factors from the app and a security key; a key registered in the browser")
    user = "lise@kommune.no"
    w.open_ticket(w.ticket(user))
    # Lise's only method is the app's notification: she proves herself with it.
    check(w.d.current_url == w.base + "/security-info/verify", w.d.current_url)
    w.click("main form button[type=submit]")
    w.see("We sent a notification to your app")
    number = w.d.find_element(By.CSS_SELECTOR, "main .number").text
    w.shot("17-verify-push")
    device = [w.portvakt, "authenticator", "--key", w.device_key, "--data", w.data]
    listed = subprocess.run(device + ["list"], capture_output=True, text=True, check=True)
    approval = listed.stdout.split()[0]
    check(re.fullmatch(r"[0-9a-f]{32}", approval) is not None, listed.stdout)
    # A wrong number first: refused, and not verified.
    wrong = "10" if number != "10" else "11"
    subprocess.run(device + ["approve", approval, wrong], capture_output=True)
    w.click("main form button[type=submit]")
    check(w.problem() == "That was not approved. Try again.", w.problem())
    check(w.d.current_url == w.base + "/security-info/verify", w.d.current_url)
    w.click("main form button[type=submit]")
    number = w.d.find_element(By.CSS_SELECTOR, "main .number").text
    listed = subprocess.run(device + ["list"], capture_output=True, text=True, check=True)
    approval = listed.stdout.split()[0]
    subprocess.run(device + ["approve", approval, number], check=True, capture_output=True)
    w.click("main form button[type=submit]")
    check(w.d.current_url == w.base + "/security-info", w.d.current_url + " " + w.problem())
    # A first registration has only the ticket: Ada registers a key as her first method.
    user = "ada@kommune.no"
    w.open_ticket(w.ticket(user))
    options = VirtualAuthenticatorOptions()
    options.protocol = VirtualAuthenticatorOptions.Protocol.CTAP2
    options.transport = VirtualAuthenticatorOptions.Transport.USB
    options.has_resident_key = True
    options.has_user_verification = True
    options.is_user_verified = True
    w.d.add_virtual_authenticator(options)
    try:
        w.add("key")
        w.see("Add a security key")
        w.shot("16-key")
        w.click("#key-button")
        check(w.notice() == "Your security key was added.", w.notice() or w.problem())
        rows = w.rows()
        check(len(rows) == 1 and "Security key" in rows[0] and "Default" in rows[0], rows)
        check(len(w.d.get_credentials()) == 1, "the authenticator holds no credential")
        # Her next visit: the key proves her.
        w.open_ticket(w.ticket(user))
        check(w.d.current_url == w.base + "/security-info/verify", w.d.current_url)
        w.click("main form button[type=submit]")
        w.click("#key-button")
        check(w.d.current_url == w.base + "/security-info", w.d.current_url + " " + w.problem())
    finally:
        w.d.remove_virtual_authenticator()
    d = w.decide(user)
    check(d["reason"] == "more_methods_required", f"{d}")


def norwegian(w):
    step("the pages in Norwegian")
    w.d.get(w.base + "/security-info?lang=nb")
    w.see("Metodene dine")
    w.see("Autentiseringsapp")
    check(w.d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nb", "lang")
    w.shot("14-norsk")
    w.link("Legg til metode")
    w.see("Hvilken metode vil du legge til?")
    w.d.get(w.base + "/security-info?lang=en")
    w.see("Your methods")
    w.click("header form button")
    w.see("You have signed out.")
    w.d.get(w.base + "/security-info")
    w.see("Your session has ended.")


def audited(w):
    step("the audit trail: who, from where, what")
    status, body = w.api(
        "/v1/admin/audit",
        {"tenant": TENANT, "user": "kari@kommune.no", "from_ms": 0, "to_ms": 2**53, "cursor": 0,
         "limit": 24},
        key=w.admin_key,
    )
    check(status == 200, f"audit: {status} {body}")
    events = body["events"]
    ops = [e["op"] for e in events]
    actors = {e["actor"] for e in events}
    check(actors == {"self-service:kari@kommune.no@kommune from 127.0.0.1"}, actors)
    for op in ["add-user", "enroll-totp", "confirm-otp", "add-phone", "confirm-sent",
               "set-default-method"]:
        check(op in ops, f"{op} not in {ops}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--outbox", required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--shots")
    p.add_argument("--ticket-ttl", type=float, default=30)
    p.add_argument("--portvakt", required=True, help="the portvakt binary (its authenticator)")
    p.add_argument("--data", required=True, help="the server's data directory (its CA)")
    p.add_argument(
        "--server-cert",
        help="the server's certificate; with it, a security key is registered too (the "
        "tenant's WebAuthn origins must hold --base)",
    )
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    if args.shots:
        os.makedirs(args.shots, exist_ok=True)
    w = Walk(args)
    try:
        first_registration(w)
        sixth_app_and_readding(w)
        second_visit_needs_second_factor(w)
        tickets_refused(w)
        forged_forms_refused(w)
        norwegian(w)
        app_notifications(w)
        if w.webauthn:
            security_key(w)
        audited(w)
    finally:
        w.close()
    print("the walk passed")


if __name__ == "__main__":
    main()

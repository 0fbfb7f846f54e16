"""The web page (`parley web`) in headless Chromium: two nodes sharing a folder bucket, Alice's page and Bob's.

Run by scripts/test after the Swift tests, against the built `parley` (PARLEY, default .build/debug/parley). Chromium
and chromedriver are Debian's (/usr/bin/chromium, /usr/bin/chromedriver); nothing is downloaded. With
PARLEY_SCREENSHOTS=docs/screenshots it also writes the README's pictures of the page.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARLEY = os.environ.get("PARLEY", os.path.join(ROOT, ".build", "debug", "parley"))
SCREENSHOTS = os.environ.get("PARLEY_SCREENSHOTS")
WAIT = 20


def parley(home, *args, check=True):
    done = subprocess.run([PARLEY, "--home", home, *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"parley {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


class Node:
    """A `parley web --no-open` process and the page address it printed."""

    def __init__(self, home, log, extra=(), arguments=None, printed="Web page: "):
        self.home, self.log_path = home, log
        self.log = open(log, "w")
        arguments = arguments or ["--home", home, "web", "--no-open", "--interval", "0.2", *extra]
        self.process = subprocess.Popen([PARLEY, *arguments], stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(log) as printed_lines:
                lines = printed_lines.readlines()
            for line in lines:
                if line.startswith(printed):
                    self.address = line[len(printed):].strip()
                    self.base = self.address.split("/?", 1)[0]
                    self.token = self.address.split("token=", 1)[1]
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"parley web printed no address: {open(log).read()}")

    def api(self, method, path, body=None):
        request = urllib.request.Request(self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def browser(size="1280,860"):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={size}",
                     "--no-first-run", "--disable-extensions"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class WebPageTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="parley-web-")
        cls.alice_home, cls.bob_home = (os.path.join(cls.directory, name) for name in ("alice", "bob"))
        bucket = "file://" + os.path.join(cls.directory, "bucket")
        parley(cls.alice_home, "init", "--user", "alice")
        parley(cls.bob_home, "init", "--user", "bob")
        parley(cls.alice_home, "room", "create", "general", "--bucket", bucket, "--create-bucket", "--name", "General")
        bob_key = json.loads(parley(cls.bob_home, "whoami", "--json").stdout)["signing_key"]
        code = json.loads(parley(cls.alice_home, "room", "invite", "general", "bob", "--key", bob_key, "--json").stdout)["invite_code"]
        parley(cls.bob_home, "room", "join", code)
        cls.alice = Node(cls.alice_home, os.path.join(cls.directory, "alice.log"))
        cls.bob = Node(cls.bob_home, os.path.join(cls.directory, "bob.log"))
        cls.alice_page, cls.bob_page = browser(), browser()
        for page, node in ((cls.alice_page, cls.alice), (cls.bob_page, cls.bob)):
            page.get(node.address)

    @classmethod
    def tearDownClass(cls):
        for page in (cls.alice_page, cls.bob_page):
            page.quit()
        for node in (cls.alice, cls.bob):
            node.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    # Helpers

    def setUp(self):
        # Each test starts with both pages in the shared room, whatever the one before left open.
        self.open_room(self.alice_page, "general")
        self.open_room(self.bob_page, "general")

    @staticmethod
    def until(page, condition, message, seconds=WAIT):
        def safe(driver):
            try:
                return condition(driver)
            except (StaleElementReferenceException, WebDriverException):
                return False
        return WebDriverWait(page, seconds, poll_frequency=0.05).until(safe, message)

    @classmethod
    def open_room(cls, page, room_id):
        if page.find_elements(By.CSS_SELECTOR, f'#room-list li[data-room-id="{room_id}"][aria-current="true"]'):
            return
        entry = cls.until(page, lambda p: p.find_element(By.CSS_SELECTOR, f'#room-list li[data-room-id="{room_id}"]'), f"room {room_id} listed")
        entry.click()
        cls.until(page, lambda p: p.find_element(By.CSS_SELECTOR, f'#room-list li[data-room-id="{room_id}"]').get_attribute("aria-current") == "true",
                  f"room {room_id} opened")

    def item_with_text(self, page, text):
        def find(p):
            for item in p.find_elements(By.CSS_SELECTOR, "#timeline .item"):
                bodies = item.find_elements(By.CSS_SELECTOR, ".body")
                if bodies and text in bodies[0].text:
                    return item
            return False
        return self.until(page, find, f"an item saying {text!r}")

    def item_by_id(self, page, event_id):
        return self.until(page, lambda p: p.find_element(By.CSS_SELECTOR, f'#timeline .item[data-event-id="{event_id}"]'), f"item {event_id}")

    def send(self, page, text):
        composer = page.find_element(By.ID, "composer")
        composer.click()
        composer.send_keys(text)
        composer.send_keys(Keys.ENTER)

    def errors(self, page):
        return [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]

    def shoot(self, page, name):
        if SCREENSHOTS:
            os.makedirs(SCREENSHOTS, exist_ok=True)
            page.save_screenshot(os.path.join(SCREENSHOTS, name))

    # Tests

    def test_0_a_conversation_shows_in_both_themes(self):
        # First, so that the pictures (PARLEY_SCREENSHOTS=docs/screenshots) show a conversation and nothing else.
        morning = self.bob.api("POST", "/v1/rooms/general/messages", {"text": "Morning! Is the release build green?"})
        self.item_by_id(self.alice_page, morning["event_id"])
        answer = self.alice.api("POST", "/v1/rooms/general/messages",
                                {"text": "It is: every suite passed, and the notes are at https://example.org/release", "reply_to": morning["event_id"]})
        self.item_by_id(self.bob_page, answer["event_id"])
        self.bob.api("POST", f"/v1/rooms/general/events/{answer['event_id']}/reactions", {"key": "🎉"})
        self.bob.api("POST", "/v1/rooms/general/messages", {"text": "Great, shipping it this afternoon.", "msgtype": "text"})
        self.until(self.alice_page, lambda p: self.item_by_id(p, answer["event_id"]).find_elements(By.CSS_SELECTOR, "button.reaction"),
                   "the reaction on Alice's page")
        self.item_with_text(self.alice_page, "shipping it")
        page, toggle = self.alice_page, self.alice_page.find_element(By.ID, "theme-toggle")
        backgrounds = {}
        for theme in ("light", "dark"):
            while page.execute_script("return document.documentElement.dataset.theme") != theme:
                toggle.click()
            backgrounds[theme] = page.execute_script("return getComputedStyle(document.body).backgroundColor")
            self.shoot(page, f"web-{theme}.png")
        self.assertNotEqual(backgrounds["light"], backgrounds["dark"])

    def test_a_message_alice_types_appears_on_bobs_page_without_a_reload(self):
        marker = self.bob_page.execute_script("window.__notReloaded = true; return window.__notReloaded")
        self.assertTrue(marker)
        self.send(self.alice_page, "hello bob, from the page")
        item = self.item_with_text(self.bob_page, "hello bob, from the page")
        self.assertEqual(item.find_element(By.CSS_SELECTOR, ".sender").text.strip(), "alice")
        self.assertTrue(self.bob_page.execute_script("return window.__notReloaded === true"), "Bob's page reloaded")
        # Alice's own copy reaches the bucket: its mark says sent.
        own = self.item_with_text(self.alice_page, "hello bob, from the page")
        self.until(self.alice_page, lambda p: own.find_element(By.CSS_SELECTOR, ".delivery").get_attribute("data-state") in ("sent", "delivered", "read"),
                   "delivery mark sent")
        # Bob's node acknowledges it (and his page, showing it, reads it): the mark moves on without a reload.
        self.until(self.alice_page, lambda p: own.find_element(By.CSS_SELECTOR, ".delivery").get_attribute("data-state") in ("delivered", "read"),
                   "delivery mark delivered", seconds=30)
        self.assertIn("✓✓", own.find_element(By.CSS_SELECTOR, ".delivery").text)
        self.assertEqual(self.errors(self.alice_page), [])
        self.assertEqual(self.errors(self.bob_page), [])

    def test_an_edit_a_reaction_a_reply_and_a_redaction_made_on_one_page_show_on_the_other(self):
        sent = self.alice.api("POST", "/v1/rooms/general/messages", {"text": "a message to change"})
        item = self.item_by_id(self.alice_page, sent["event_id"])
        self.item_by_id(self.bob_page, sent["event_id"])

        # Edit on Alice's page.
        self.alice_page.execute_script("arguments[0].scrollIntoView()", item)
        item.find_element(By.CSS_SELECTOR, '[data-action="edit"]').click()
        composer = self.alice_page.find_element(By.ID, "composer")
        self.until(self.alice_page, lambda p: composer.get_attribute("value") == "a message to change", "the composer holds the text to edit")
        composer.send_keys(Keys.CONTROL, "a")
        composer.send_keys("a changed message", Keys.ENTER)
        bob_item = self.until(self.bob_page, lambda p: (i := self.item_by_id(p, sent["event_id"])) and "a changed message" in i.find_element(By.CSS_SELECTOR, ".body").text and i,
                              "Bob sees the edit")
        self.assertTrue(bob_item.find_elements(By.CSS_SELECTOR, ".edited"))

        # React on Bob's page.
        bob_item.find_element(By.CSS_SELECTOR, '[data-action="react"]').click()
        picker = self.until(self.bob_page, lambda p: p.find_element(By.ID, "react-picker"), "the reaction picker")
        picker.find_element(By.CSS_SELECTOR, "button[data-key]").click()
        key = self.until(self.alice_page, lambda p: self.item_by_id(p, sent["event_id"]).find_element(By.CSS_SELECTOR, "button.reaction"), "Alice sees the reaction")
        self.assertIn("1", key.text)

        # Reply on Bob's page.
        bob_item = self.item_by_id(self.bob_page, sent["event_id"])
        bob_item.find_element(By.CSS_SELECTOR, '[data-action="reply"]').click()
        self.until(self.bob_page, lambda p: p.find_element(By.ID, "reply-bar").is_displayed(), "the reply bar")
        self.send(self.bob_page, "this is a reply")
        reply = self.item_with_text(self.alice_page, "this is a reply")
        self.assertIn("a changed message", reply.find_element(By.CSS_SELECTOR, ".reply-quote").text)

        # Redact on Alice's page.
        item = self.item_by_id(self.alice_page, sent["event_id"])
        item.find_element(By.CSS_SELECTOR, '[data-action="redact"]').click()
        self.until(self.alice_page, lambda p: p.find_element(By.ID, "confirm-ok").is_displayed() and p.find_element(By.ID, "confirm-ok"),
                   "the confirmation").click()
        self.until(self.bob_page, lambda p: "message deleted" in self.item_by_id(p, sent["event_id"]).find_element(By.CSS_SELECTOR, ".body").text,
                   "Bob sees the message deleted")

    def test_an_urgent_message_and_its_checked_forward_show_their_marks_on_the_other_page(self):
        urgent = self.alice.api("POST", "/v1/rooms/general/messages", {"text": "the build is broken", "priority": "urgent"})
        item = self.item_by_id(self.bob_page, urgent["event_id"])
        self.until(self.bob_page, lambda p: item.find_element(By.CSS_SELECTOR, ".priority.urgent").text.strip().lower() == "urgent",
                   "the urgent mark on Bob's page")
        forward = self.bob.api("POST", f"/v1/rooms/general/events/{urgent['event_id']}/forward", {"to": "general"})
        shown = self.item_by_id(self.alice_page, forward["event_id"])
        self.until(self.alice_page, lambda p: "forwarded from alice, checked" in shown.find_element(By.CSS_SELECTOR, ".forwarded.matches").text,
                   "the checked forward on Alice's page")
        self.assertEqual([event["event_id"] for event in self.alice.api("GET", "/v1/query?room=general&priority=urgent")["events"]],
                         [urgent["event_id"]])
        with self.assertRaises(urllib.error.HTTPError) as refused:
            self.bob.api("POST", "/v1/rooms/general/messages", {"text": "x", "priority": "asap"})
        self.assertEqual(refused.exception.code, 400)
        self.assertEqual(self.errors(self.alice_page), [])
        self.assertEqual(self.errors(self.bob_page), [])

    def test_a_reaction_clicked_again_is_taken_back_on_both_pages(self):
        sent = self.alice.api("POST", "/v1/rooms/general/messages", {"text": "react and take it back"})
        self.alice.api("POST", f"/v1/rooms/general/events/{sent['event_id']}/reactions", {"key": "👀"})
        theirs = self.until(self.bob_page, lambda p: self.item_by_id(p, sent["event_id"]).find_element(By.CSS_SELECTOR, 'button.reaction[data-key="👀"]'),
                            "Bob sees Alice's reaction")
        self.assertEqual(theirs.get_attribute("aria-pressed"), "false")
        # Bob adds the same key, then Alice takes hers back by clicking it: Bob's stays.
        theirs.click()
        self.until(self.alice_page, lambda p: "2" in self.item_by_id(p, sent["event_id"]).find_element(By.CSS_SELECTOR, 'button.reaction[data-key="👀"]').text,
                   "Alice sees two")
        mine = self.item_by_id(self.alice_page, sent["event_id"]).find_element(By.CSS_SELECTOR, 'button.reaction[data-key="👀"]')
        self.assertEqual(mine.get_attribute("aria-pressed"), "true")
        mine.click()
        for page in (self.alice_page, self.bob_page):
            self.until(page, lambda p: (b := self.item_by_id(p, sent["event_id"]).find_element(By.CSS_SELECTOR, 'button.reaction[data-key="👀"]'))
                       and b.text.strip().endswith("1") and "alice" not in b.get_attribute("title"), "one reaction left, not Alice's")
        self.assertEqual(self.errors(self.alice_page), [])

    def test_a_file_chosen_or_dropped_on_alices_page_shows_on_bobs_and_downloads_whole(self):
        png = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]) + b"IHDR" + bytes([0, 0, 2, 128, 0, 0, 1, 224])
        png += bytes((i * 7) % 256 for i in range(300_000))
        path = os.path.join(self.directory, "holiday.png")
        with open(path, "wb") as handle:
            handle.write(png)
        chooser = self.alice_page.find_element(By.ID, "file-input")
        self.alice_page.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(path)
        self.alice_page.execute_script("arguments[0].hidden = true", chooser)

        def card(page, name):
            for item in page.find_elements(By.CSS_SELECTOR, "#timeline .item"):
                links = item.find_elements(By.CSS_SELECTOR, ".file-card a.file-name")
                if links and links[0].text == name:
                    return item
            return False
        item = self.until(self.bob_page, lambda p: card(p, "holiday.png"), "the file on Bob's page")
        self.assertIn("640×480", item.find_element(By.CSS_SELECTOR, ".file-meta").text)
        self.until(self.bob_page, lambda p: card(p, "holiday.png").find_element(By.CSS_SELECTOR, "img").get_property("naturalWidth") >= 0,
                   "the preview")
        href = item.find_element(By.CSS_SELECTOR, "a.file-name").get_attribute("href")
        digest = self.bob_page.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(arguments[0]).then(async (answer) => {
              const bytes = await answer.arrayBuffer();
              const hash = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
              done([answer.status, answer.headers.get("content-type"), bytes.byteLength, hash]);
            }, (error) => done([0, String(error), 0, ""]));
        """, href)
        self.assertEqual(digest, [200, "image/png", len(png), hashlib.sha256(png).hexdigest()])

        # A file dropped on the messages is shared too; an HTML one comes back as a download, not a page.
        self.alice_page.execute_script("""
            const transfer = new DataTransfer();
            transfer.items.add(new File(["<script>alert(1)</script>"], "dropped.html", { type: "text/html" }));
            const timeline = document.getElementById("timeline");
            for (const type of ["dragover", "drop"]) timeline.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        """)
        dropped = self.until(self.bob_page, lambda p: card(p, "dropped.html"), "the dropped file on Bob's page")
        self.assertFalse(dropped.find_elements(By.CSS_SELECTOR, "img"), "no preview for HTML")
        answer = self.bob_page.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(arguments[0]).then((answer) => done([answer.headers.get("content-type"), answer.headers.get("content-disposition")]));
        """, dropped.find_element(By.CSS_SELECTOR, "a.file-name").get_attribute("href"))
        self.assertEqual(answer, ["application/octet-stream", "attachment; filename*=UTF-8''dropped.html"])
        self.assertEqual(self.errors(self.alice_page), [])
        self.assertEqual(self.errors(self.bob_page), [])

    def test_text_in_the_composer_becomes_a_files_caption_and_a_cancelled_upload_shares_nothing(self):
        path = os.path.join(self.directory, "itinerary.txt")
        with open(path, "w") as handle:
            handle.write("day one: the coast\n" * 100)
        composer = self.alice_page.find_element(By.ID, "composer")
        composer.click()
        composer.send_keys("our trip, day by day")
        chooser = self.alice_page.find_element(By.ID, "file-input")
        self.alice_page.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(path)
        self.alice_page.execute_script("arguments[0].hidden = true", chooser)
        item = self.item_with_text(self.bob_page, "our trip, day by day")
        self.assertEqual(item.find_element(By.CSS_SELECTOR, ".file-card a.file-name").text, "itinerary.txt")
        self.assertEqual(composer.get_attribute("value"), "", "the caption left the composer")

        # A large file cancelled at once: its row goes, and the node keeps nothing of it.
        self.alice_page.execute_script("""
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(256 * 1024 * 1024)], "cancelled.bin"));
            const timeline = document.getElementById("timeline");
            for (const type of ["dragover", "drop"]) timeline.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            document.querySelector("#uploads .upload-cancel").click();
        """)
        self.assertFalse(self.alice_page.find_elements(By.CSS_SELECTOR, "#uploads .upload"))
        spool = os.path.join(self.alice_home, "uploads")
        self.until(self.alice_page, lambda p: not [name for name in os.listdir(spool) if name.startswith(".spool-")], "the spool emptied")
        marker = self.alice.api("POST", "/v1/rooms/general/messages", {"text": "after the cancelled upload"})
        self.item_by_id(self.bob_page, marker["event_id"])
        names = [link.text for link in self.bob_page.find_elements(By.CSS_SELECTOR, "#timeline .file-card a.file-name")]
        self.assertNotIn("cancelled.bin", names)
        self.assertEqual(self.errors(self.alice_page), [])

    def test_search_finds_a_message_and_opens_its_room(self):
        self.alice.api("POST", "/v1/rooms/general/messages", {"text": "the walrus keeps a lighthouse"})
        self.item_with_text(self.bob_page, "walrus keeps")
        box = self.bob_page.find_element(By.ID, "search-input")
        box.clear()
        box.send_keys("walrus lighthouse", Keys.ENTER)
        result = self.until(self.bob_page, lambda p: p.find_element(By.CSS_SELECTOR, "#search-results li[data-room-id='general']"), "a search result")
        self.assertIn("walrus", result.text)

    def test_message_text_that_looks_like_markup_or_links_is_shown_as_text(self):
        hostile = [
            "<img src=x onerror=alert(1)>",
            "<script>document.title='owned'</script>",
            "javascript:alert(1)",
            "data:text/html,<b>x</b>",
            "right-to-left \u202eevil.exe\u202c override",
            "zero\u200bwidth",
            "bell\u0007 and escape \u001b[31m red",
        ]
        for text in hostile:
            self.alice.api("POST", "/v1/rooms/general/messages", {"text": text})
        self.alice.api("POST", "/v1/rooms/general/messages", {"text": "a link https://example.org/path?q=1 in text"})
        self.alice.api("POST", "/v1/rooms/general/messages", {"text": "x" * 10_000})
        self.item_with_text(self.bob_page, "a link")
        timeline = self.bob_page.find_element(By.ID, "timeline")
        # No element comes from message text (a shared image's preview, in its file card, is the page's own).
        self.assertEqual(timeline.find_elements(By.CSS_SELECTOR, ".body img"), [])
        self.assertEqual(timeline.find_elements(By.CSS_SELECTOR, "img:not(.file-card img)"), [])
        self.assertEqual(timeline.find_elements(By.TAG_NAME, "script"), [])
        self.assertNotEqual(self.bob_page.title, "owned")
        body = self.item_with_text(self.bob_page, "<img src=x onerror=alert(1)>").find_element(By.CSS_SELECTOR, ".body")
        self.assertIn("<img src=x onerror=alert(1)>", body.text)
        for item_text in ("javascript:alert(1)", "data:text/html"):
            item = self.item_with_text(self.bob_page, item_text)
            self.assertEqual(item.find_elements(By.CSS_SELECTOR, ".body a"), [], f"{item_text} became a link")
        links = self.item_with_text(self.bob_page, "a link").find_elements(By.CSS_SELECTOR, ".body a")
        self.assertEqual(len(links), 1)
        self.assertEqual(links[0].get_attribute("href"), "https://example.org/path?q=1")
        self.assertEqual(set(links[0].get_attribute("rel").split()), {"noopener", "noreferrer"})
        control = self.item_with_text(self.bob_page, "bell").find_element(By.CSS_SELECTOR, ".body").text
        self.assertNotIn("\u0007", control)
        self.assertNotIn("\u001b", control)
        # The long line stays inside the timeline.
        width = self.bob_page.execute_script("return document.getElementById('timeline').scrollWidth - document.getElementById('timeline').clientWidth")
        self.assertLessEqual(width, 1)
        self.assertEqual(self.errors(self.bob_page), [])

    def test_the_theme_toggle_switches_between_light_and_dark(self):
        page = self.alice_page
        toggle = page.find_element(By.ID, "theme-toggle")
        seen = set()
        for _ in range(3):
            toggle.click()
            seen.add(page.execute_script("return document.documentElement.dataset.theme"))
        self.assertEqual(seen, {"light", "dark"})

    def test_a_long_room_keeps_at_most_500_messages_in_the_page_while_scrolling_back_to_its_start(self):
        self.alice.api("POST", "/v1/rooms", {"room_id": "long", "name": "Long"})
        for index in range(1, 1_201):
            self.alice.api("POST", "/v1/rooms/long/messages", {"text": f"message number {index}"})
        page = self.alice_page
        self.open_room(page, "long")
        self.item_with_text(page, "message number 1200")
        most = 0

        def scrolled_to_start(p):
            nonlocal most
            most = max(most, len(p.find_elements(By.CSS_SELECTOR, "#timeline .item")))
            p.execute_script("document.getElementById('timeline').scrollTop = 0")
            return any(body.text == "message number 1" for body in p.find_elements(By.CSS_SELECTOR, "#timeline .item .body"))
        self.until(page, scrolled_to_start, "the room's first message was never reached", seconds=120)
        self.assertLessEqual(most, 500)
        self.assertGreater(most, 50)

    def test_a_direct_message_is_opened_from_the_page_and_a_room_left(self):
        page = self.bob_page
        dave = os.path.join(self.directory, "dave")
        parley(dave, "init", "--user", "dave")
        key = json.loads(parley(dave, "whoami", "--json").stdout)["signing_key"]
        page.find_element(By.ID, "new-dm").click()
        self.until(page, lambda p: p.find_element(By.ID, "dm-user").is_displayed(), "the direct-message dialog")
        page.find_element(By.ID, "dm-user").send_keys("dave")
        page.find_element(By.ID, "dm-key").send_keys(key)
        page.find_element(By.ID, "dm-start").click()
        self.until(page, lambda p: p.find_element(By.ID, "room-title").text.strip() == "dave", "the direct message never opened")
        page.find_element(By.ID, "leave-button").click()
        self.until(page, lambda p: p.find_element(By.ID, "confirm-ok").is_displayed() and p.find_element(By.ID, "confirm-ok"),
                   "the confirmation").click()
        self.until(page, lambda p: "You left dave" in p.find_element(By.ID, "last-error").text, "leaving was not confirmed")
        self.assertEqual(self.errors(page), [])

    def test_the_page_without_its_token_is_refused(self):
        page = browser()
        try:
            page.get(self.alice.base + "/")
            self.assertIn("needs the node's token", page.find_element(By.TAG_NAME, "body").text)
            page.get(self.alice.base + "/?token=" + "0" * 64)
            self.assertIn("needs the node's token", page.find_element(By.TAG_NAME, "body").text)
        finally:
            page.quit()

    def test_the_token_is_taken_off_the_address_bar(self):
        self.assertNotIn("token=", self.alice_page.current_url)

    def test_zz_a_restarted_node_is_reconnected_to_and_typed_text_is_kept(self):
        page = self.alice_page
        composer = page.find_element(By.ID, "composer")
        composer.click()
        composer.send_keys("typed while the node was away")
        type(self).alice.stop()
        self.until(page, lambda p: "Reconnecting" in p.find_element(By.ID, "status").text, "the page says it reconnects")
        type(self).alice = Node(self.alice_home, os.path.join(self.directory, "alice-2.log"))
        self.until(page, lambda p: "Connected" in p.find_element(By.ID, "status").text, "the page reconnected")
        self.assertEqual(page.find_element(By.ID, "composer").get_attribute("value"), "typed while the node was away")
        page.find_element(By.ID, "composer").send_keys(Keys.ENTER)
        self.item_with_text(self.bob_page, "typed while the node was away")


class DemoTests(unittest.TestCase):
    """`parley web --demo`: Alice's and Bob's chats in frames of one page, and the traffic between them."""

    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="parley-demo-")
        demo = os.path.join(cls.directory, "demo")
        cls.demo = Node(demo, os.path.join(cls.directory, "demo.log"), arguments=["web", "--demo", "--no-open", "--demo-dir", demo],
                        printed="Demo page: ")
        cls.page = browser("1600,900")
        cls.page.get(cls.demo.address)

    @classmethod
    def tearDownClass(cls):
        cls.page.quit()
        cls.demo.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    until = staticmethod(WebPageTests.until)
    item_with_text = WebPageTests.item_with_text
    send = WebPageTests.send
    shoot = WebPageTests.shoot

    def frame(self, name):
        """Switches the driver into `name`'s frame, with the demo room open there."""
        page = self.page
        page.switch_to.default_content()
        frame = self.until(page, lambda p: p.find_element(By.CSS_SELECTOR, f'.device[data-participant="{name}"] iframe[src]'), f"{name}'s frame")
        page.switch_to.frame(frame)
        WebPageTests.open_room(page, "demo")
        return page

    def traffic_row(self, predicate, message):
        page = self.page
        page.switch_to.default_content()
        return self.until(page, lambda p: next((row for row in p.find_elements(By.CSS_SELECTOR, "#traffic-log tr") if predicate(row)), False), message)

    def test_0_a_message_typed_in_alices_frame_appears_in_bobs_and_its_way_in_the_traffic(self):
        self.send(self.frame("alice"), "hello from the demo")
        self.item_with_text(self.frame("bob"), "hello from the demo")
        row = self.traffic_row(lambda r: "stored by Bob after" in r.text and r.get_attribute("class") == "event", "the event's way to Bob")
        self.assertIn("message", row.text)
        self.traffic_row(lambda r: r.text.split()[2:3] == ["PUT"] and "rooms/demo/logs/" in r.text, "Alice's log file written")
        # The stats are drawn again as they change: the count is read afresh until it shows the delivery.
        def delivered(p):
            text = p.find_element(By.CSS_SELECTOR, '#stats dd[data-stat="delivered"]').text
            return text.isdigit() and int(text) >= 1
        self.until(self.page, delivered, "the delivered count")
        self.assertNotIn("token=", self.page.current_url)
        self.shoot(self.page, "web-demo.png")

    def test_a_node_taken_offline_keeps_its_message_until_it_is_back(self):
        page = self.page
        page.switch_to.default_content()
        page.find_element(By.CSS_SELECTOR, '.device[data-participant="alice"] .online-toggle').click()
        self.until(page, lambda p: "offline" in p.find_element(By.CSS_SELECTOR, '.device[data-participant="alice"]').get_attribute("class"),
                   "Alice's node shown offline")
        alice = self.frame("alice")
        self.send(alice, "written while offline")
        own = self.item_with_text(alice, "written while offline")
        self.until(alice, lambda p: own.find_element(By.CSS_SELECTOR, ".delivery").get_attribute("data-state") == "failed",
                   "Alice's message marked not sent")
        self.traffic_row(lambda r: "failed: offline" in r.text, "a failed request in the traffic")
        page.switch_to.default_content()
        page.find_element(By.CSS_SELECTOR, '.device[data-participant="alice"] .online-toggle').click()
        self.item_with_text(self.frame("bob"), "written while offline")
        alice = self.frame("alice")
        own = self.item_with_text(alice, "written while offline")
        self.until(alice, lambda p: own.find_element(By.CSS_SELECTOR, ".delivery").get_attribute("data-state") in ("sent", "delivered", "read"),
                   "Alice's message sent")

    def test_a_simulation_started_on_the_page_shows_its_progress_then_a_report_where_every_device_agrees(self):
        page = self.page
        page.switch_to.default_content()
        form = page.find_element(By.ID, "simulation-form")
        for name, value in [("devices", "3"), ("seconds", "3"), ("rate", "10"), ("loss", "10"), ("files", "20")]:
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        page.find_element(By.ID, "simulation-start").click()
        self.until(page, lambda p: "Running: 3 devices over peers" in p.find_element(By.ID, "simulation-status").text, "the simulation running")
        self.until(page, lambda p: "messages sent" in p.find_element(By.ID, "simulation-lines").text, "its progress lines")

        def stat(name):
            return lambda p: p.find_element(By.CSS_SELECTOR, f'#simulation-report dd[data-stat="{name}"]').text
        self.until(page, lambda p: stat("same-events")(p) == "yes", "the report: same events on every device", seconds=90)
        self.assertEqual(stat("same-state")(page), "yes")
        delivered, _, total = stat("delivered")(page).partition(" of ")
        self.assertEqual(delivered, total)
        self.assertTrue(int(total) > 0)
        fetched, _, pairs = stat("files")(page).partition(" of ")
        self.assertEqual(fetched, pairs)
        self.assertFalse(page.find_element(By.ID, "simulation-start").get_property("disabled"))
        self.shoot(self.page, "web-demo-simulation.png")

    def test_the_demo_page_without_its_token_is_refused(self):
        other = browser()
        try:
            other.get(self.demo.base + "/")
            self.assertIn("needs the demo's token", other.find_element(By.TAG_NAME, "body").text)
        finally:
            other.quit()


class DemoRelayTests(unittest.TestCase):
    """`parley web --demo --demo-relay`: the room travels through a relay run by the demo as well as the bucket."""

    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="parley-demo-relay-")
        demo = os.path.join(cls.directory, "demo")
        cls.demo = Node(demo, os.path.join(cls.directory, "demo.log"),
                        arguments=["web", "--demo", "--demo-relay", "--no-open", "--demo-dir", demo], printed="Demo page: ")
        cls.page = browser("1600,900")
        cls.page.get(cls.demo.address)

    @classmethod
    def tearDownClass(cls):
        cls.page.quit()
        cls.demo.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    until = staticmethod(WebPageTests.until)
    item_with_text = WebPageTests.item_with_text
    send = WebPageTests.send
    frame = DemoTests.frame
    traffic_row = DemoTests.traffic_row

    def test_with_alices_bucket_cut_her_message_reaches_bob_through_the_relay(self):
        page = self.page
        page.switch_to.default_content()
        self.until(page, lambda p: "relay at http://127.0.0.1:" in p.find_element(By.ID, "bucket").text, "the page names the relay")
        switch = page.find_element(By.CSS_SELECTOR, '.device[data-participant="alice"] .online')
        self.assertIn("bucket link", switch.text)
        switch.find_element(By.CSS_SELECTOR, ".online-toggle").click()
        self.until(page, lambda p: "offline" in p.find_element(By.CSS_SELECTOR, '.device[data-participant="alice"]').get_attribute("class"),
                   "Alice's bucket cut")
        self.send(self.frame("alice"), "through the relay alone")
        self.item_with_text(self.frame("bob"), "through the relay alone")
        self.traffic_row(lambda r: "stored by Bob after" in r.text and "via the relay" in r.text, "the event's way to Bob through the relay")

    def test_typing_in_alices_frame_shows_in_bobs_through_the_relay(self):
        alice = self.frame("alice")
        composer = alice.find_element(By.ID, "composer")
        composer.click()
        composer.send_keys("I am typing")
        self.until(self.frame("bob"), lambda p: "alice" in p.find_element(By.ID, "typing").text, "Bob never saw Alice typing")
        alice = self.frame("alice")
        alice.find_element(By.ID, "composer").send_keys(Keys.ENTER)
        self.until(self.frame("bob"), lambda p: "alice" not in p.find_element(By.ID, "typing").text, "Alice's sent line did not end her typing")


if __name__ == "__main__":
    unittest.main(verbosity=2)

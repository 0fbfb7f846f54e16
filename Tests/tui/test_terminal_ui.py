"""The terminal UI (`parley chat`) in tmux: Alice's and Bob's nodes on one folder bucket, each chat in a tmux window.

Run by scripts/test after the Swift tests, against the built `parley` (PARLEY, default .build/debug/parley), with
Debian's tmux on a socket of its own.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARLEY = os.environ.get("PARLEY", os.path.join(ROOT, ".build", "debug", "parley"))
WAIT = 20


def parley(home, *args):
    done = subprocess.run([PARLEY, "--home", home, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"parley {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def screenshot(ansi, path, columns=100, rows=30):
    """Draws tmux's capture (text with SGR colour sequences) as HTML and has headless Chromium take its picture."""
    import html
    import re
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    palette = ["#1e1e1e", "#cd3131", "#0dbc79", "#b8a000", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5"]
    out, state = [], {"fg": None, "bg": None, "bold": False, "dim": False, "reverse": False}

    def span(text):
        fg, bg = state["fg"] or "#d4d4d4", state["bg"] or "#1e1e1e"
        if state["reverse"]:
            fg, bg = bg, fg
        style = f"color:{fg};background:{bg};" + ("font-weight:bold;" if state["bold"] else "") + ("opacity:0.6;" if state["dim"] else "")
        out.append(f'<span style="{style}">{html.escape(text)}</span>')

    for line in ansi.rstrip("\n").split("\n")[:rows]:
        for part in re.split(r"(\x1b\[[0-9;]*m)", line):
            match = re.fullmatch(r"\x1b\[([0-9;]*)m", part)
            if not match:
                if part:
                    span(part)
                continue
            codes = [int(code) for code in match.group(1).split(";") if code] or [0]
            while codes:
                code = codes.pop(0)
                if code == 0:
                    state.update(fg=None, bg=None, bold=False, dim=False, reverse=False)
                elif code in (1, 2, 7):
                    state[{1: "bold", 2: "dim", 7: "reverse"}[code]] = True
                elif code in (22, 27):
                    state.update(bold=False, dim=False) if code == 22 else state.update(reverse=False)
                elif 30 <= code <= 37 or 90 <= code <= 97:
                    state["fg"] = palette[code % 10]
                elif 40 <= code <= 47 or 100 <= code <= 107:
                    state["bg"] = palette[code % 10]
                elif code == 39:
                    state["fg"] = None
                elif code == 49:
                    state["bg"] = None
                elif code in (38, 48) and codes[:1] == [5]:
                    colour = codes[1] if len(codes) > 1 else 7
                    codes = codes[2:]
                    state["fg" if code == 38 else "bg"] = palette[colour % 8]
        out.append("\n")
    page = os.path.join(os.path.dirname(path), "terminal.html")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(page, "w") as f:
        f.write('<!doctype html><meta charset="utf-8"><body style="margin:0;background:#1e1e1e">'
                '<pre style="display:inline-block;margin:0;padding:8px;font:15px/1.2 \'DejaVu Sans Mono\',\'Liberation Mono\',monospace,\'Noto Color Emoji\';color:#d4d4d4">'
                + "".join(out) + "</pre>")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1200", "--hide-scrollbars"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get("file://" + page)
        driver.find_element("tag name", "pre").screenshot(path)
    finally:
        driver.quit()
        os.remove(page)


class TerminalUITests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="parley-tui-")
        cls.socket = os.path.join(cls.directory, "tmux.sock")
        cls.alice, cls.bob = (os.path.join(cls.directory, name) for name in ("alice", "bob"))
        bucket = "file://" + os.path.join(cls.directory, "bucket")
        parley(cls.alice, "init", "--user", "alice")
        parley(cls.bob, "init", "--user", "bob")
        parley(cls.alice, "room", "create", "general", "--bucket", bucket, "--create-bucket", "--name", "General")
        key = json.loads(parley(cls.bob, "whoami", "--json"))["signing_key"]
        code = json.loads(parley(cls.alice, "room", "invite", "general", "bob", "--key", key, "--json"))["invite_code"]
        parley(cls.bob, "room", "join", code)
        cls.tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", "-n", "alice", cls.chat_command(cls.alice))
        cls.tmux("new-window", "-t", "chat", "-n", "bob", cls.chat_command(cls.bob))

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["tmux", "-S", cls.socket, "kill-server"], capture_output=True)
        shutil.rmtree(cls.directory, ignore_errors=True)

    @classmethod
    def chat_command(cls, home, extra=""):
        # After the chat: how it ended, and the terminal's modes, for the tests to read.
        return (f"TERM=xterm-256color {extra} {PARLEY} --home {home} chat --interval 0.2; echo \"EXITED $?\"; "
                "stty -a | tr '\\n' ' '; echo; sleep 600")

    @classmethod
    def tmux(cls, *args):
        return subprocess.run(["tmux", "-S", cls.socket, *args], capture_output=True, text=True, check=True).stdout

    def screen(self, window):
        return self.tmux("capture-pane", "-p", "-t", f"chat:{window}")

    def until(self, window, condition, message, seconds=WAIT):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.screen(window)
            if condition(text):
                return text
            time.sleep(0.05)
        self.fail(f"{message}; the screen:\n{self.screen(window)}")

    def ready(self, window):
        """Waits until the chat is connected with the room open (its name in the title bar)."""
        self.until(window, lambda s: "connected" in s and s.startswith(" General"), f"{window}'s chat never opened the room")

    def type(self, window, text):
        self.tmux("send-keys", "-t", f"chat:{window}", "-l", text)
        self.tmux("send-keys", "-t", f"chat:{window}", "Enter")

    def test_0_a_conversation_in_the_terminal(self):
        # First, so that the picture (PARLEY_SCREENSHOTS=docs/screenshots) shows a conversation and nothing else.
        self.ready("alice")
        self.ready("bob")
        self.type("bob", "Morning! Is the release build green?")
        self.until("alice", lambda s: "bob: Morning!" in s, "Alice never saw Bob's line")
        self.type("alice", "/reply It is: every suite passed 🎉")
        self.until("bob", lambda s: "alice: It is: every suite passed" in s, "Bob never saw the reply")
        self.type("bob", "/react 👍")
        self.type("bob", "Great, shipping it this afternoon.")
        self.until("alice", lambda s: "[👍 1]" in s and "shipping it" in s, "Alice never saw the reaction and the last line")
        if os.environ.get("PARLEY_SCREENSHOTS"):
            screenshot(self.tmux("capture-pane", "-e", "-p", "-N", "-t", "chat:alice"), os.path.join(os.environ["PARLEY_SCREENSHOTS"], "terminal.png"))

    def test_a_line_typed_in_alices_chat_appears_in_bobs(self):
        self.ready("alice")
        self.ready("bob")
        self.type("alice", "hello bob, 世界 👍🏽 from the terminal")
        self.until("bob", lambda s: "alice: hello bob, 世界 👍🏽 from the terminal" in s, "Bob never saw Alice's line")
        self.until("alice", lambda s: "from the terminal ✓" in s, "Alice's line never showed as sent")

    def test_a_file_uploaded_with_upload_shows_in_the_other_chat_and_downloads_whole(self):
        self.ready("alice")
        self.ready("bob")
        path = os.path.join(self.directory, "minutes.txt")
        content = ("the minutes of the meeting\n" * 20_000).encode()
        with open(path, "wb") as handle:
            handle.write(content)
        self.type("alice", f"/upload {path}")
        self.until("alice", lambda s: "Shared minutes.txt." in s, "Alice was not told the file was shared")
        self.until("bob", lambda s: "alice: [file: minutes.txt, 527.3 KiB]" in s, "Bob never saw the file")
        self.type("alice", "/upload /no/such/file.txt")
        self.until("alice", lambda s: "Cannot open /no/such/file.txt" in s, "Alice was not told the path is wrong")
        log = json.loads(parley(self.bob, "log", "general", "--json"))
        shared = [item for item in log if item.get("file", {}).get("name") == "minutes.txt"][-1]
        target = os.path.join(self.directory, "minutes-copy.txt")
        parley(self.bob, "download", shared["event_id"], "-o", target)
        with open(target, "rb") as handle:
            self.assertEqual(handle.read(), content)

    def test_edit_react_reply_and_redact_reach_the_other_chat(self):
        self.ready("alice")
        self.ready("bob")
        self.type("alice", "a line to change")
        self.until("bob", lambda s: "alice: a line to change" in s, "Bob never saw the line")
        self.type("alice", "/edit a changed line")
        self.until("bob", lambda s: "alice: a changed line (edited)" in s, "Bob never saw the edit")
        self.type("bob", "/react 🎉")
        self.until("alice", lambda s: "[🎉 1]" in s, "Alice never saw the reaction")
        # The same reaction again takes it back.
        self.until("bob", lambda s: "[🎉 1]" in s, "Bob never saw his reaction")
        self.type("bob", "/react 🎉")
        self.until("bob", lambda s: "Reaction 🎉 taken back" in s, "Bob was not told the reaction was taken back")
        self.until("alice", lambda s: "a changed line (edited)" in s and "[🎉" not in s, "Alice still sees the reaction")
        self.type("bob", "/reply agreed")
        self.until("alice", lambda s: "↳ alice: a changed line" in s and "bob: agreed" in s, "Alice never saw the reply")
        self.type("alice", "/redact")
        self.until("bob", lambda s: "alice: message deleted" in s, "Bob never saw the redaction")

    def test_text_from_outside_never_reaches_the_terminal_as_control_sequences(self):
        self.ready("bob")
        parley(self.alice, "send", "general", "evil \x1b[2J\x1b]0;pwned\x07 \u202eexe.txt end-of-evil")
        screen = self.until("bob", lambda s: "end-of-evil" in s, "Bob never saw the hostile line")
        self.assertIn("␛[2J", screen)
        self.assertIn("General", screen, "the screen was cleared by the message")
        title = self.tmux("display-message", "-p", "-t", "chat:bob", "#{pane_title}")
        self.assertNotIn("pwned", title)

    def test_an_urgent_message_and_a_forward_of_it_show_their_marks(self):
        self.ready("bob")
        urgent = parley(self.alice, "send", "general", "the build is broken", "--priority", "urgent").strip()
        self.until("bob", lambda s: "the build is broken [urgent]" in s, "Bob never saw the urgent mark")
        parley(self.alice, "forward", urgent, "--to", "general")
        self.until("bob", lambda s: "(forwarded from alice, checked)" in s, "Bob never saw the checked forward")

    def test_the_chat_redraws_after_resizes_down_to_20_by_5(self):
        self.ready("alice")
        for width, height in ((80, 24), (20, 5), (100, 30)):
            self.tmux("resize-window", "-t", "chat:alice", "-x", str(width), "-y", str(height))
            screen = self.until("alice", lambda s: "connected" in s and len(s.rstrip("\n").split("\n")) <= height,
                                f"no redraw at {width}x{height}")
            self.assertLessEqual(max(len(line) for line in screen.split("\n")), width * 2)

    def test_a_chat_on_a_node_that_restarts_reconnects_and_keeps_a_line_the_node_could_not_take(self):
        carol = os.path.join(self.directory, "carol")
        parley(carol, "init", "--user", "carol")
        parley(carol, "room", "create", "notes", "--name", "Notes")
        node = subprocess.Popen([PARLEY, "--home", carol, "node"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + WAIT
            while not os.path.exists(os.path.join(carol, "node.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.tmux("new-window", "-t", "chat", "-n", "carol", self.chat_command(carol))
            self.until("carol", lambda s: "connected" in s and s.startswith(" Notes"), "Carol's chat never opened the room")
            node.terminate()
            node.wait(30)
            self.until("carol", lambda s: "reconnecting" in s, "the chat never noticed the node had stopped")
            self.type("carol", "written while the node was away")
            self.until("carol", lambda s: s.rstrip().split("\n")[-1].startswith("> written while the node was away"),
                       "the line the node could not take was lost")
            node = subprocess.Popen([PARLEY, "--home", carol, "node"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.until("carol", lambda s: "● connected" in s or " connected" in s.split("\n")[-2], "the chat never reconnected")
            self.tmux("send-keys", "-t", "chat:carol", "Enter")
            self.until("carol", lambda s: "carol: written while the node was away" in s, "the line was not sent after the restart")
        finally:
            node.terminate()
            node.wait(30)

    def test_a_direct_message_is_opened_with_dm_and_left_with_leave(self):
        dave = os.path.join(self.directory, "dave")
        parley(dave, "init", "--user", "dave")
        key = json.loads(parley(dave, "whoami", "--json"))["signing_key"]
        self.ready("alice")
        self.type("alice", f"/dm dave {key}")
        self.until("alice", lambda s: s.startswith(" @dave") and "A new direct message with dave" in s, "the direct message never opened")
        self.type("alice", "/leave")
        self.until("alice", lambda s: "You left" in s, "leaving was not confirmed")
        self.tmux("send-keys", "-t", "chat:alice", "C-p")
        self.until("alice", lambda s: s.startswith(" General"), "Ctrl-P did not go back to the room")

    def test_zz_ctrl_c_and_sigterm_leave_the_terminal_sane(self):
        self.tmux("send-keys", "-t", "chat:alice", "C-c")
        # The modes come on the line after EXITED: both are waited for.
        # The chat's own node writes its outbox before it exits (up to 10 s) and closes its API: given a minute.
        screen = self.until("alice", lambda s: "EXITED" in s and "speed" in s, "Ctrl-C did not end the chat", seconds=60)
        self.assertIn("EXITED 0", screen)
        modes = screen[screen.index("EXITED"):]
        for mode in (" icanon", " echo ", " icrnl", " opost"):
            self.assertIn(mode, modes.replace("\n", ""), f"the terminal is left without {mode.strip()}")
        pid = self.tmux("display-message", "-p", "-t", "chat:bob", "#{pane_pid}").strip()
        chat = subprocess.run(["pgrep", "-P", pid, "-f", "chat"], capture_output=True, text=True).stdout.split()
        self.assertTrue(chat, "Bob's chat process was not found")
        subprocess.run(["kill", "-TERM", chat[0]], check=True)
        screen = self.until("bob", lambda s: "EXITED" in s and "speed" in s, "SIGTERM did not end the chat", seconds=60)
        modes = screen[screen.index("EXITED"):]
        for mode in (" icanon", " echo ", " icrnl", " opost"):
            self.assertIn(mode, modes.replace("\n", ""), f"the terminal is left without {mode.strip()} after SIGTERM")


if __name__ == "__main__":
    unittest.main(verbosity=2)

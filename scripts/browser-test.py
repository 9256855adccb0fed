#!/usr/bin/env python3
"""Drives the web playground in a real browser (Debian's chromium + chromedriver, Selenium).

Usage: python3 scripts/browser-test.py http://127.0.0.1:PORT [artifacts-dir [http://127.0.0.1:KEYED-PORT]]

The optional third URL is a gateway that requires the API key in $BROWSER_TEST_API_KEY.

Expects a running gateway on the example prefabs (scripts/browser-test.sh starts one). Prints one
line per check and a final count; exits non-zero when any check fails. A screenshot of the page
after each scenario goes to artifacts/browser/ (never committed).
"""

import json
import os
import sys
import time
import traceback
import urllib.request

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try the network

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 1000)
TIMEOUT = 30  # seconds; generous, the waits return as soon as the condition holds
EXAMPLE_FUNCTIONS = {"echo", "batch_process", "chat_stream", "report", "fail_midway", "wizard", "wizard_py",
                     "batch_items", "count_lines", "flaky_steps"}

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"
ARTIFACTS = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "artifacts", "browser")

KEYED = sys.argv[3].rstrip("/") if len(sys.argv) > 3 else None
API_KEY = os.environ.get("BROWSER_TEST_API_KEY", "")

passed = 0
failed = 0


def check(name, ok, detail=""):
    """Counts and prints one check."""
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def http_json(path):
    with urllib.request.urlopen(BASE + path, timeout=10) as response:
        return json.load(response)


def make_driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Page:
    """The playground in one browser tab, with the waits the scenarios need."""

    def __init__(self, driver):
        self.driver = driver

    def wait(self, condition, message, timeout=TIMEOUT):
        # The page re-renders parts of itself: an element found a moment ago may be gone; look again.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(
            lambda _: condition(), message)

    def find(self, testid, within=None):
        return (within or self.driver).find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def find_all(self, testid, within=None):
        return (within or self.driver).find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def listed_functions(self):
        links = self.driver.find_elements(By.CSS_SELECTOR, '#function-list [data-testid^="function-"]')
        return {link.get_attribute("data-testid").removeprefix("function-") for link in links}

    def visible(self, testid):
        elements = self.find_all(testid)
        return elements[0] if elements and elements[0].is_displayed() else None

    def open(self, function=None):
        """Loads the page afresh (no state from an earlier scenario) and picks `function` from the list."""
        self.driver.get(BASE + "/")
        self.wait(lambda: self.find_all("function-echo"), "the function list never appeared")
        if function:
            link = self.find(f"function-{function}")
            link.click()
            self.wait(lambda: self.driver.find_element(By.ID, "function-title").text == function,
                      f"the form of {function} never appeared")

    def fill(self, parameter, text):
        field = self.find(f"param-{parameter}")
        field.clear()
        field.send_keys(text)

    def run(self):
        self.find("run").click()
        self.wait(lambda: self.visible("run-status"), "no run appeared")

    def state(self):
        return self.find("run-status").get_attribute("data-state")

    def wait_state(self, *states, timeout=TIMEOUT):
        self.wait(lambda: self.find_all("run-status") and self.state() in states,
                  f"the run never reached {'/'.join(states)}", timeout)

    def result(self):
        return json.loads(self.find("result").text)

    def answer_question(self, text, option, timeout=TIMEOUT, screenshot=None):
        """Types `text` into the open question's input, then clicks the `option` button of the next one."""
        answer = self.wait(lambda: self.visible("answer-input"), "no question with a text input appeared", timeout)
        question = self.find("question").find_element(By.CLASS_NAME, "question-text").text
        if screenshot:
            self.screenshot(screenshot)
        answer.send_keys(text)
        self.find("answer-send").click()
        button = self.wait(lambda: self.visible(f"answer-option-{option}"), f"no option button '{option}' appeared", timeout)
        second = self.find("question").find_element(By.CLASS_NAME, "question-text").text
        button.click()
        return question, second

    def screenshot(self, name):
        """The whole page (the window grows to the page's height for the shot), into ARTIFACTS/name.png."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        size = self.driver.get_window_size()
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size["width"], max(size["height"], min(height + 140, 4000)))
        try:
            self.driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))
        finally:
            self.driver.set_window_size(size["width"], size["height"])


def red(css_color):
    """True for a clearly red colour such as rgb(180, 35, 24)."""
    digits = css_color[css_color.index("(") + 1:css_color.index(")")].split(",")
    r, g, b = (float(x) for x in digits[:3])
    return r > 140 and r > 2 * g and r > 2 * b


# ---------------------------------------------------------------- the scenarios


def scenario_list(page):
    page.open()
    check("the page starts with a short guide", "Pick one" in page.find("welcome").text)
    page.screenshot("welcome")
    manifest = http_json("/manifest")["functions"]
    names = {f["name"] for f in manifest}
    check("the manifest has every example function", EXAMPLE_FUNCTIONS <= names, str(EXAMPLE_FUNCTIONS - names))
    listed = page.listed_functions()
    check("every function of /manifest is listed, and nothing else", listed == names, f"listed {sorted(listed)}")

    problems = []
    for fn in manifest:
        page.find(f"function-{fn['name']}").click()
        page.wait(lambda: page.driver.find_element(By.ID, "function-title").text == fn["name"], f"no form for {fn['name']}")
        if fn.get("description") and page.find("function-description").text != fn["description"]:
            problems.append(f"{fn['name']}: description")
        for param in fn.get("parameters", []):
            control = page.find(f"param-{param['name']}")
            label = page.driver.find_elements(By.CSS_SELECTOR, f'label[for="{control.get_attribute("id")}"]')
            if not label or param["name"] not in label[0].text:
                problems.append(f"{fn['name']}.{param['name']}: no label")
            kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                    "list": "array", "dict": "object"}.get(param["type"], param["type"])
            tag, input_type = control.tag_name, control.get_attribute("type")
            expected = {"integer": ("input", "number"), "number": ("input", "number"), "boolean": ("input", "checkbox"),
                        "array": ("textarea", "textarea"), "object": ("textarea", "textarea")}.get(kind)
            if param.get("enum"):
                expected = ("select", "select-one")
            if expected and (tag, input_type) != expected:
                problems.append(f"{fn['name']}.{param['name']}: {tag}/{input_type} for {kind}")
            if kind == "integer" and control.get_attribute("step") != "1":
                problems.append(f"{fn['name']}.{param['name']}: integer without step 1")
            if "default" in param and kind in ("integer", "number", "string"):
                if control.get_attribute("value") != str(param["default"]):
                    problems.append(f"{fn['name']}.{param['name']}: default {param['default']!r} not prefilled")
            if param.get("required") and control.get_attribute("aria-required") != "true":
                problems.append(f"{fn['name']}.{param['name']}: required not marked")
    check("each function's form has a labelled control per parameter, of its type, with defaults and required marked",
          not problems, "; ".join(problems))


def scenario_batch_process(page):
    page.open("batch_process")
    page.fill("items", '["a","b","c"]')
    page.fill("delay_ms", "100")
    started = time.monotonic()
    page.run()
    page.wait_state("done")
    took = time.monotonic() - started
    bar = page.find("progress-bar")
    check("batch_process: the progress bar reaches 100%",
          bar.get_attribute("aria-valuenow") == "100" and "100%" in page.find("progress-text").text,
          f"aria-valuenow={bar.get_attribute('aria-valuenow')}, text={page.find('progress-text').text!r}")
    check("batch_process: '3 / 3' shows", "3 / 3" in page.find("progress-text").text, page.find("progress-text").text)
    result = page.result()
    check("batch_process: the done result shows [\"A\",\"B\",\"C\"]", result.get("results") == ["A", "B", "C"], json.dumps(result))
    check("batch_process: three progress events at 100 ms each take at least 0.3 s (streamed, not faked)", took >= 0.3, f"{took:.2f} s")
    log = page.find("event-log")
    closed = log.get_attribute("open") is None
    log.find_element(By.TAG_NAME, "summary").click()
    entries = page.wait(lambda: [e for e in log.find_elements(By.CSS_SELECTOR, "li") if e.is_displayed()], "the event log did not open")
    types = [json.loads(e.find_element(By.TAG_NAME, "code").text)["type"] for e in entries]
    check("batch_process: the raw event log is collapsed, opens, and holds the 5 events as JSON",
          closed and types == ["start", "progress", "progress", "progress", "done"], str(types))
    check("batch_process: the status says done and the Cancel button is gone",
          "done" in page.find("run-status").text and not page.find("cancel").is_displayed(), page.find("run-status").text)


def scenario_wizard(page, function):
    page.open(function)
    page.run()
    first, second = page.answer_question("demo", "web", timeout=60, screenshot=f"{function}-question")
    check(f"{function}: the name question shows its text", "What is the project called?" in first, first)
    check(f"{function}: the template question names the answer and offers buttons", "Which template for demo?" in second, second)
    page.wait_state("done")
    check(f"{function}: done shows the name and the template", page.result() == {"name": "demo", "template": "web"}, page.find("result").text)
    answered = page.find_all("question-answered")
    check(f"{function}: both questions show as answered", len(answered) == 2 and "web" in answered[1].text,
          [a.text for a in answered])


def scenario_report(page):
    page.open("report")
    page.fill("rows", "3")
    page.run()
    page.wait_state("done")
    links = page.find_all("file-link")
    names = [link.text for link in links]
    check("report: links to report.csv and report.md appear", sorted(names) == ["report.csv", "report.md"], str(names))
    csv_link = next((link for link in links if link.text == "report.csv"), None)
    if csv_link is None:
        return
    check("report: the links download (download attribute)", csv_link.get_attribute("download") == "report.csv")
    with urllib.request.urlopen(csv_link.get_attribute("href"), timeout=10) as response:
        body = response.read().decode()
    check("report: the CSV link serves the CSV", body.startswith("month,units,revenue"), body[:60])


def scenario_fail_midway(page):
    page.open("fail_midway")
    page.fill("delay_ms", "20")
    page.run()
    page.wait_state("error")
    error = page.find("error")
    code = page.find("error-code").text
    check("fail_midway: the error shows with its code", code == "STEP_FAILED" and "failed" in error.text, error.text)
    check("fail_midway: the error is red", red(error.value_of_css_property("color")), error.value_of_css_property("color"))
    check("fail_midway: the status says error", page.find("run-status").get_attribute("data-state") == "error"
          and "error" in page.find("run-status").text)


def scenario_cancel(page):
    page.open("batch_process")
    page.fill("items", json.dumps([f"item {n}" for n in range(20)]))
    page.fill("delay_ms", "300")
    page.run()
    page.wait(lambda: page.find("progress-text").text.startswith("1 / 20"), "no progress before the cancel")
    cancel = page.find("cancel")
    check("cancel: a Cancel button shows while running", cancel.is_displayed() and cancel.is_enabled())
    clicked = time.monotonic()
    cancel.click()
    page.wait_state("cancelled", timeout=15)
    took = time.monotonic() - clicked
    check("cancel: the status shows cancelled", "cancelled" in page.find("run-status").text, page.find("run-status").text)
    check("cancel: the error code CANCELLED shows", page.find("error-code").text == "CANCELLED", page.find("error").text)
    check("cancel: the run stopped early", not page.find("progress-text").text.startswith("20 / 20"), page.find("progress-text").text)
    invocation = page.find("invocation-id").text.removeprefix("invocation ").strip()
    state = http_json(f"/invocations/{invocation}").get("state")
    check(f"cancel: the gateway says the invocation is cancelled ({took:.2f} s after the click)", state == "cancelled", str(state))


def scenario_echo_invalid(page):
    page.open("echo")
    page.run()
    page.wait_state("error")
    error = page.find("error")
    check("echo without text: the 422 error shows with its code", "INVALID_INPUTS" in error.text and "422" in error.text, error.text)
    details = page.find("error-details").text
    check("echo without text: the parameter name and reason show", "text" in details and "required" in details, details)
    page.screenshot("echo-422")
    field_error = page.find("param-error-text")
    check("echo without text: the field itself is marked", field_error.is_displayed()
          and page.find("param-text").get_attribute("aria-invalid") == "true", field_error.text)
    # The same form, filled in: the non-streaming answer shows as the result, as text (never as HTML).
    text = "<b>hi</b>"
    page.fill("text", text)
    page.find("param-text").send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter runs from a textarea
    page.wait_state("done")
    check("echo with text: the JSON answer shows as the result", page.result() == {"text": text, "length": len(text)}, page.find("result").text)
    check("echo with text: markup in a result is shown as text", not page.find("result").find_elements(By.TAG_NAME, "b"))


def scenario_chat_stream(page):
    page.open("chat_stream")
    page.fill("prompt", "hello there")
    page.fill("delay_ms", "5")
    page.run()
    page.wait_state("done")
    streamed = page.find("content-output").text
    result = page.result()
    check("chat_stream: the streamed text adds up to the done text", streamed and streamed.strip() == str(result.get("text", "")).strip(),
          f"{streamed!r} vs {result.get('text')!r}")


def scenario_bad_json(page):
    page.open("batch_process")
    page.fill("items", '["a", "b"')
    page.find("run").click()
    error = page.wait(lambda: page.visible("param-error-items"), "no inline JSON error")
    check("bad JSON in an array field: a friendly inline error, no run", "JSON" in error.text and not page.find_all("run-status"),
          error.text)
    page.fill("items", "one\ntwo")
    page.run()
    page.wait_state("done")
    check("an array field takes one item per line", page.result().get("results") == ["ONE", "TWO"], page.find("result").text)


def scenario_narrow(page):
    page.driver.set_window_size(400, 900)  # main() restores the size after the scenario's screenshot
    page.open("wizard")
    page.run()
    page.wait(lambda: page.visible("answer-input"), "no question in the narrow window", 60)
    width = page.driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    check("a narrow window (400 px) needs no sideways scrolling", width[0] <= width[1] + 1, f"scrollWidth {width[0]} > {width[1]}")
    page.screenshot("narrow-question")
    page.find("cancel").click()
    page.wait_state("cancelled")


def no_console_errors(driver):
    try:
        entries = driver.get_log("browser")
    except Exception:  # some drivers do not offer the log
        return
    # A refused call (422) is logged by the browser itself as a failed resource: that is expected.
    errors = [e["message"] for e in entries if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]
    check("no JavaScript errors in the browser console", not errors, "; ".join(errors[:3]))


def scenario_python_examples(page):
    """The Python examples not driven elsewhere, each run once through its form."""
    page.open("batch_items")
    page.fill("items", '["x", "y"]')
    page.run()
    page.wait_state("done")
    check("batch_items: done with the total", page.result() == {"total": 2}, page.find("result").text)

    page.open("count_lines")
    page.fill("text", "one two\nthree")
    page.fill("every", "1")
    page.run()
    page.wait_state("done")
    names = [link.text for link in page.find_all("file-link")]
    check("count_lines: done, with its summary file linked", page.state() == "done" and names, str(names))

    page.open("flaky_steps")
    page.run()
    page.wait_state("error")
    check("flaky_steps: the Python exception's code shows", page.find("error-code").text == "STEP_FAILED",
          page.find("error").text)


def scenario_event_source(page):
    """A browser's own EventSource on /invocations/<id>/events: every event once, in order; when
    the stream ends it reconnects with Last-Event-ID, gets 204, and stops."""
    page.driver.set_script_timeout(30)
    outcome = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/invoke/batch_process', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({inputs: {items: ['a', 'b', 'c'], delay_ms: 300}})})
          .then(response => {
            const id = response.headers.get('X-Invocation-Id');
            response.body.cancel();  // the POST's own stream is dropped: the events come from EventSource
            const source = new EventSource('/invocations/' + id + '/events');
            const ids = [], types = [];
            source.onmessage = message => { ids.push(message.lastEventId); types.push(JSON.parse(message.data).type); };
            const started = Date.now();
            const poll = setInterval(() => {
              if (source.readyState === EventSource.CLOSED || Date.now() - started > 25000) {
                clearInterval(poll);
                done({ids, types, closed: source.readyState === EventSource.CLOSED});
              }
            }, 100);
          })
          .catch(error => done({error: String(error)}));
    """)
    check("EventSource: every event arrives once, in order",
          outcome.get("ids") == ["1", "2", "3", "4", "5"], json.dumps(outcome))
    check("EventSource: the last one is done", (outcome.get("types") or [None])[-1] == "done", json.dumps(outcome))
    check("EventSource: after the end it reconnects once, gets 204 and stops", outcome.get("closed") is True,
          json.dumps(outcome))


def scenario_api_key(page):
    """A gateway with API keys: the page asks for the key once, then lists and runs with it."""
    driver = page.driver
    driver.get(KEYED + "/")
    # `alert_is_present`, not `switch_to.alert`: the wait ignores only NoSuchElementException, so a
    # prompt that came a moment after the page (the 401 is a fetch away) failed the scenario.
    prompt = WebDriverWait(driver, TIMEOUT).until(expected_conditions.alert_is_present(),
                                                  "the page never asked for a key")
    check("api-key: the page asks for the key after a 401", "API key" in prompt.text, prompt.text)
    prompt.send_keys(API_KEY)
    prompt.accept()
    page.wait(lambda: EXAMPLE_FUNCTIONS <= page.listed_functions(), "the functions never appeared with the key")
    check("api-key: with the key the functions are listed", True)
    page.find("function-report").click()
    page.wait(lambda: driver.find_element(By.ID, "function-title").text == "report", "no report form")
    page.fill("rows", "2")
    page.run()
    page.wait_state("done")
    check("api-key: a run with the key ends done", page.state() == "done", page.state())
    body = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const url = document.querySelector('[data-testid=\"file-link\"]').href;"
        "const key = sessionStorage.getItem('prefab-gateway-api-key');"
        "Promise.all([fetch(url).then(r => r.status),"
        " fetch(url, {headers: {Authorization: 'Bearer ' + key}}).then(r => r.text())])"
        ".then(done, e => done(String(e)));")
    check("api-key: the file needs the key, and the kept key fetches it",
          isinstance(body, list) and body[0] == 401 and body[1].startswith("month,units,revenue"), str(body)[:80])
    # The file link names another origin (--public-url localhost): clicking it must not hand the
    # key to it. The page's fetch is watched; navigation is stopped after the link's own handler.
    calls = driver.execute_script("""
        const calls = [];
        const original = window.fetch;
        window.fetch = (url, options) => {
          const headers = (options && options.headers) || {};
          calls.push({url: String(url), key: Object.keys(headers).some(name => name.toLowerCase() === 'authorization')});
          return original(url, options);
        };
        const stop = event => event.preventDefault();
        document.addEventListener('click', stop);
        try {
          document.querySelector('[data-testid="file-link"]').click();
        } finally {
          document.removeEventListener('click', stop);
          window.fetch = original;
        }
        return {calls, origin: location.origin, link: document.querySelector('[data-testid="file-link"]').href};
    """)
    leaked = [call for call in calls["calls"] if call["key"] and not call["url"].startswith(calls["origin"] + "/")]
    check("api-key: the key is not sent to a file URL on another origin",
          calls["link"].startswith("http://localhost:") and not leaked, json.dumps(calls))


def main():
    scenarios = [
        ("list", scenario_list),
        ("batch_process", scenario_batch_process),
        ("wizard", lambda page: scenario_wizard(page, "wizard")),
        ("wizard_py", lambda page: scenario_wizard(page, "wizard_py")),
        ("report", scenario_report),
        ("fail_midway", scenario_fail_midway),
        ("cancel", scenario_cancel),
        ("echo-invalid", scenario_echo_invalid),
        ("chat_stream", scenario_chat_stream),
        ("bad-json", scenario_bad_json),
        ("narrow", scenario_narrow),
        ("python-examples", scenario_python_examples),
        ("event-source", scenario_event_source),
    ]
    print(f"playground at {BASE}/, screenshots in {os.path.normpath(ARTIFACTS)}", flush=True)
    began = time.monotonic()
    driver = make_driver()
    try:
        page = Page(driver)
        for name, scenario in scenarios:
            started = time.monotonic()
            try:
                scenario(page)
            except Exception as error:  # one broken scenario must not hide the others
                detail = (getattr(error, "msg", None) or str(error)).strip().splitlines()
                where = traceback.extract_tb(error.__traceback__)[-1]
                check(f"{name}: the scenario ran to its end", False,
                      f"{type(error).__name__}: {detail[0] if detail else ''} (line {where.lineno}: {where.line})")
            finally:
                try:
                    page.screenshot(name)
                    driver.set_window_size(*WINDOW)
                except Exception:
                    pass
            print(f"      -- {name}: {time.monotonic() - started:.2f} s", flush=True)
        no_console_errors(driver)
        # Last: its 401s are console errors by design.
        if KEYED:
            try:
                scenario_api_key(Page(driver))
            except Exception as error:
                check("api-key: the scenario ran to its end", False, f"{type(error).__name__}: {error}")
            finally:
                try:
                    Page(driver).screenshot("api-key")
                except Exception:
                    pass  # an open prompt refuses screenshots; the check above says what failed
    finally:
        driver.quit()
    print(f"{passed} passed, {failed} failed in {time.monotonic() - began:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

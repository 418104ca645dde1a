package web

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// browser is headless Chromium driven over the DevTools protocol on a
// pair of pipes (--remote-debugging-pipe: JSON messages ended by NUL on
// file descriptors 3 and 4), one page attached in flat session mode. It
// needs no port and no client library.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	in      *os.File // our end of Chromium's fd 3
	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpReply
	session string
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser starts Chromium with one blank page, or skips the test
// without Chromium (fails when CLEANPROD_REQUIRE_SERVERS=1).
func startBrowser(t *testing.T) *browser {
	t.Helper()
	chromium := FindChromium()
	if chromium == "" {
		if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
			t.Fatal("chromium not found; scripts/test installs Debian chromium")
		}
		t.Skip("chromium not found (Debian chromium); run scripts/test")
	}
	dir := t.TempDir()
	cmdR, cmdW, err := os.Pipe() // we write commands, Chromium reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe() // Chromium writes fd 4, we read
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromium, append(ChromiumFlags(dir), "--remote-debugging-pipe", "--window-size=1280,1400")...)
	cmd.ExtraFiles = []*os.File{cmdR, outW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmdR.Close()
	outW.Close()
	b := &browser{t: t, cmd: cmd, in: cmdW, waiting: map[int]chan cdpReply{}}
	t.Cleanup(func() {
		cmdW.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		outR.Close()
	})
	go func() {
		r := bufio.NewReader(outR)
		for {
			msg, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			var m struct {
				ID int `json:"id"`
				cdpReply
			}
			if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
				continue // an event
			}
			b.mu.Lock()
			ch := b.waiting[m.ID]
			delete(b.waiting, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m.cdpReply
			}
		}
	}()
	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	return b
}

// call sends one command (to the page's session unless session is "")
// and decodes its result into out.
func (b *browser) call(session, method string, params any, out any) {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		b.t.Fatalf("chromium %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			b.t.Fatalf("chromium %s: %s", method, r.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				b.t.Fatalf("chromium %s: %v in %s", method, err, r.Result)
			}
		}
	case <-time.After(60 * time.Second):
		b.t.Fatalf("chromium %s: no answer within 60s", method)
	}
}

// navigate opens url in the page.
func (b *browser) navigate(url string) {
	b.t.Helper()
	b.call(b.session, "Page.navigate", map[string]any{"url": url}, nil)
}

// eval evaluates a JavaScript expression in the page and decodes its
// value into out (nil: ignore it); a thrown exception fails the test.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if r.Exception != nil {
		b.t.Fatalf("eval %s: %s", expr, r.Exception.Text)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("eval %s: %v in %s", expr, err, r.Result.Value)
		}
	}
}

// waitTrue evaluates a boolean expression until it is true, failing the
// test after timeout (while the page loads, evaluation may fail: tried
// again).
func (b *browser) waitTrue(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		var r struct {
			Result struct {
				Value json.RawMessage `json:"value"`
			} `json:"result"`
		}
		b.call(b.session, "Runtime.evaluate", map[string]any{"expression": "!!(" + expr + ")", "returnByValue": true}, &r)
		if json.Unmarshal(r.Result.Value, &ok) == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var body string
			b.eval("document.body ? document.body.innerText.slice(0, 600) : ''", &body)
			b.t.Fatalf("%s: not within %v; the page shows:\n%s", what, timeout, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves the page as name.png in $CLEANPROD_ARTIFACTS/browser
// (or the test's temporary folder).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("CLEANPROD_ARTIFACTS")
	if dir == "" {
		dir = b.t.TempDir()
	} else {
		dir = filepath.Join(dir, "browser")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatal(err)
		}
	}
	var shot struct {
		Data string `json:"data"`
	}
	b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 10_000 {
		b.t.Errorf("screenshot %s: %d bytes, %v (too small to show the page)", name, len(png), err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Error(err)
	}
	b.t.Logf("screenshot %s", path)
}

// pageCounter counts the overview's full loads and its live fetches.
type pageCounter struct {
	next           http.Handler
	loads, fetches atomic.Int64
}

func (p *pageCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == "GET" && r.URL.Path == "/" {
		if r.URL.Query().Get("part") == "fleet" {
			p.fetches.Add(1)
		} else {
			p.loads.Add(1)
		}
	}
	p.next.ServeHTTP(w, r)
}

// TestBrowserLoginAndLiveRows opens the overview in headless Chromium as
// a person would: without a token it is the sign-in page (not the API's
// JSON), a wrong token is refused on the page, the supervisor's token
// signs in and stays out of page scripts' reach (HttpOnly); the search
// and the code filter narrow the fleet table; then a policy reload turns
// entA (green, Level I) red through a code_change event, and its row
// turns red in place: the page was not loaded again (a value set in the
// page survives, and the server saw no second load).
func TestBrowserLoginAndLiveRows(t *testing.T) {
	f := newFixture(t)
	counter := &pageCounter{next: f.handler}
	srv := httptest.NewServer(counter)
	t.Cleanup(srv.Close) // after the browser's end (cleanups run last first), which ends its event stream
	b := startBrowser(t)

	// What the API says, to compare the page with.
	list := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises", supervisorToken, ""))
	red := 0
	var codeA string
	for _, e := range list.Enterprises {
		if deref(e.Code) == "red" {
			red++
		}
		if e.ID == entA {
			codeA = deref(e.Code)
		}
	}
	if codeA != "green" || red == 0 || red == len(list.Enterprises) {
		t.Fatalf("fixture: %s is %q with %d red of %d; the test needs it green and some, not all, red", entA, codeA, red, len(list.Enterprises))
	}

	// No token: the sign-in page.
	b.navigate(srv.URL + "/")
	b.waitTrue("the sign-in page", `document.getElementById("token")`, 30*time.Second)
	var text string
	b.eval(`document.body.innerText`, &text)
	if !strings.Contains(text, "访问令牌") || !strings.Contains(text, "Access token") || strings.Contains(text, `"error"`) {
		t.Errorf("sign-in page shows:\n%s", text)
	}
	b.screenshot("login")

	// A wrong token: refused on the page.
	b.eval(`document.getElementById("token").value = "cp_not-a-token"; document.querySelector("form").submit()`, nil)
	b.waitTrue("the refusal of a wrong token", `document.getElementById("login-error")`, 30*time.Second)

	// The supervisor's token: the overview.
	b.eval(fmt.Sprintf(`document.getElementById("token").value = %q; document.querySelector("form").submit()`, supervisorToken), nil)
	b.waitTrue("the overview after signing in", `document.querySelectorAll("#rows tr").length === `+fmt.Sprint(len(list.Enterprises)), 30*time.Second)
	var where, cookies string
	b.eval(`location.pathname + location.search`, &where)
	b.eval(`document.cookie`, &cookies)
	if where != "/" || strings.Contains(cookies, supervisorToken) {
		t.Errorf("signed in at %q with page-readable cookies %q: want / and the token out of scripts' reach", where, cookies)
	}

	// Search and filters.
	visible := `Array.from(document.querySelectorAll("#rows tr")).filter(function (tr) { return !tr.hidden; }).map(function (tr) { return tr.dataset.id; })`
	var shown []string
	b.eval(fmt.Sprintf(`(function () { var q = document.getElementById("f-q"); q.value = %q; q.dispatchEvent(new Event("input", {bubbles: true})); return %s; })()`, "shanchuan", visible), &shown)
	if len(shown) != 1 || shown[0] != entB {
		t.Errorf("search shanchuan: rows %v, want only %s", shown, entB)
	}
	b.eval(`(function () { var q = document.getElementById("f-q"); q.value = ""; q.dispatchEvent(new Event("input", {bubbles: true})); var s = document.getElementById("f-code"); s.value = "red"; s.dispatchEvent(new Event("change", {bubbles: true})); return `+visible+`; })()`, &shown)
	if len(shown) != red {
		t.Errorf("code filter red: rows %v, want the %d red enterprises", shown, red)
	}
	b.eval(`location.hash`, &where)
	if where != "#code=red" {
		t.Errorf("filter in the address: %q, want #code=red", where)
	}
	b.eval(`(function () { var s = document.getElementById("f-code"); s.value = ""; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, nil)

	// Live: the event stream is open; mark the page, then turn entA red.
	b.waitTrue("the event stream open", `document.getElementById("live").dataset.state === "live"`, 30*time.Second)
	b.eval(`window.cleanprodMarker = "still the same page"; true`, nil)
	loads := counter.loads.Load()
	rowA := fmt.Sprintf(`document.querySelector('#rows tr[data-id=%q]')`, entA)
	var before string
	b.eval(rowA+`.dataset.code`, &before)
	if before != "green" {
		t.Fatalf("%s's row: code %q, want green", entA, before)
	}
	f.redWhen(t, "when_any: [below_iii, restrictive_fail, exceedance, level_i]")
	b.waitTrue(entA+"'s row turning red in place", rowA+`.dataset.code === "red"`, 30*time.Second)
	var marker, badge string
	b.eval(`window.cleanprodMarker`, &marker)
	b.eval(rowA+`.querySelector(".badge").textContent`, &badge)
	if marker != "still the same page" || counter.loads.Load() != loads {
		t.Errorf("the page was loaded again (marker %q, loads %d then %d): want the row updated in place", marker, loads, counter.loads.Load())
	}
	if counter.fetches.Load() == 0 {
		t.Error("no fetch of the live sections")
	}
	if badge != "红码 red" {
		t.Errorf("%s's badge: %q, want 红码 red", entA, badge)
	}
	var changed bool
	b.eval(rowA+`.classList.contains("changed")`, &changed)
	if !changed {
		t.Errorf("%s's row is not marked as changed", entA)
	}
	b.screenshot("overview-live")
}

package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/review"
)

// TestBrowserCaseWorkflow walks a red code through its rectification
// case in headless Chromium, as the bureau and the officer would: entA
// turns red, the watcher opens its case (from the scorer's event, as
// serve wires it), the supervisor finds it on the overview and
// acknowledges it with an assignee and a deadline, the officer signs in
// and answers with a plan and evidence (and is offered no supervisor's
// step), the supervisor closes it, and it leaves the overview.
func TestBrowserCaseWorkflow(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	b := startBrowser(t)

	// serve's wiring: every announced event reaches the watcher.
	watcher := review.NewWatcher(f.decl, time.Hour, nil, nil)
	evs, unsubscribe, ok := f.events.Subscribe(256)
	if !ok {
		t.Fatal("the broadcaster is closed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() {
		for e := range evs {
			watcher.Notify(e)
		}
		done <- struct{}{}
	}()
	go func() { watcher.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); unsubscribe(); <-done; <-done })

	f.redWhen(t, "when_any: [below_iii, restrictive_fail, exceedance, level_i]")
	var id string
	for deadline := time.Now().Add(30 * time.Second); id == ""; {
		cs, err := f.decl.Cases(ctx, review.CaseFilter{Enterprise: entA})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) > 0 {
			if cs[0].Cause != review.CauseRedCode || cs[0].State != review.CaseOpen {
				t.Fatalf("entA's case: %+v, want an open red-code case", cs[0])
			}
			id = cs[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no case opened for entA's red code within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	signIn := func(token, next string) {
		t.Helper()
		b.call(b.session, "Network.clearBrowserCookies", nil, nil) // signed out
		b.navigate(srv.URL + "/login?next=" + next)
		b.waitTrue("the sign-in page", `document.getElementById("token")`, 30*time.Second)
		b.eval(fmt.Sprintf(`document.getElementById("token").value = %q; document.querySelector("form").submit()`, token), nil)
	}
	state := func(want string) {
		t.Helper()
		b.waitTrue("the case "+want, fmt.Sprintf(`document.getElementById("case-state") && document.getElementById("case-state").dataset.state === %q`, want), 30*time.Second)
	}

	// The supervisor finds it on the overview and acknowledges it.
	signIn(supervisorToken, "/")
	row := fmt.Sprintf(`document.querySelector('#case-table tr[data-case=%q]')`, id)
	b.waitTrue("the red case on the supervisor's overview", row, 30*time.Second)
	b.eval(row+`.querySelector("a").click()`, nil)
	b.waitTrue("the acknowledge form", `document.getElementById("form-acknowledge")`, 30*time.Second)
	b.eval(`document.getElementById("assignee").value = "李工 环保专员"; document.getElementById("deadline").value = "2026-06-20";
		document.getElementById("ack-note").value = "两周内提交整改方案"; document.getElementById("form-acknowledge").submit()`, nil)
	state("acknowledged")
	var due string
	b.eval(`document.getElementById("case-deadline").innerText`, &due)
	if due != "2026-06-20 24:00 UTC+8" {
		t.Errorf("deadline on the page: %q, want the end of the day entered, 2026-06-20 24:00 UTC+8", due)
	}
	b.screenshot("case-acknowledged")

	// The officer sees it on its own overview and answers it.
	signIn(enterpriseToken, "/")
	b.waitTrue("the case on the officer's overview", row+` && `+row+`.dataset.state === "acknowledged"`, 30*time.Second)
	b.screenshot("overview-case")
	b.eval(row+`.querySelector("a").click()`, nil)
	b.waitTrue("the plan form", `document.getElementById("form-plan")`, 30*time.Second)
	var offered bool
	b.eval(`!!(document.getElementById("form-acknowledge") || document.getElementById("form-close") || document.getElementById("form-reject"))`, &offered)
	if offered {
		t.Error("the officer's case page offers a supervisor's step")
	}
	b.eval(`document.getElementById("plan").value = "更换喷涂线 RTO 燃烧器，6 月 15 日前完成";
		document.getElementById("evidence").value = "采购合同 PO-7781\n验收报告 QA-2026-118"; document.getElementById("form-plan").submit()`, nil)
	state("plan_submitted")

	// The supervisor closes it; its history holds every step.
	signIn(supervisorToken, "/cases/"+id)
	state("plan_submitted")
	b.eval(`document.getElementById("close-note").value = "验收合格"; document.getElementById("form-close").submit()`, nil)
	state("closed")
	var steps []string
	b.eval(`Array.from(document.querySelectorAll("#history tbody tr")).map(function (tr) { return tr.dataset.action; })`, &steps)
	if fmt.Sprint(steps) != "[opened acknowledged plan_submitted closed]" {
		t.Errorf("history on the page: %v", steps)
	}
	var text string
	b.eval(`document.getElementById("case").innerText`, &text)
	for _, s := range []string{"李工 环保专员", "PO-7781", "QA-2026-118", "更换喷涂线"} {
		if !strings.Contains(text, s) {
			t.Errorf("the closed case's page does not show %q:\n%s", s, text)
		}
	}
	b.screenshot("case-closed")
	b.navigate(srv.URL + "/")
	b.waitTrue("the overview", `document.getElementById("cases")`, 30*time.Second)
	var listed bool
	b.eval(`!!`+row, &listed)
	if listed {
		t.Error("the closed case is still on the overview")
	}
}

// secmon console: the theme switch, selection, keyboard shortcuts, and
// the live queue. No inline script anywhere (the CSP forbids it); this
// file is the only script, served from this origin with its SRI digest.
"use strict";

(function () {
  const root = document.documentElement;

  // Theme: the system's until switched; the choice is a cookie the server
  // reads, so the next page is drawn in it from the first paint.
  const themeButton = document.getElementById("theme");
  if (themeButton) {
    themeButton.addEventListener("click", function () {
      const dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      const next = dark ? "light" : "dark";
      root.dataset.theme = next;
      document.cookie = "secmon_theme=" + next + "; Path=/ui; Max-Age=31536000; SameSite=Strict";
    });
  }

  // Select every alert of the page.
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('#triage input[name="id"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // Keyboard: plain keys only, never with a modifier, never in a field.
  const help = document.getElementById("help");
  const helpButton = document.getElementById("shortcuts");
  if (help && helpButton) {
    helpButton.addEventListener("click", function () { help.showModal(); });
  }
  let pendingG = false;
  let cursor = -1;
  function rows() { return Array.from(document.querySelectorAll("tbody tr[data-id]")); }
  function moveCursor(step) {
    const list = rows();
    if (!list.length) return;
    if (cursor >= 0 && list[cursor]) list[cursor].classList.remove("cursor");
    cursor = Math.max(0, Math.min(list.length - 1, cursor + step));
    list[cursor].classList.add("cursor");
    list[cursor].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (help && help.open) return;
    const key = e.key;
    if (pendingG) {
      pendingG = false;
      if (key === "a") { window.location.href = "/ui/alerts"; e.preventDefault(); }
      else if (key === "d") { window.location.href = "/ui/decisions"; e.preventDefault(); }
      else if (key === "s") { window.location.href = "/ui/search"; e.preventDefault(); }
      else if (key === "r") { window.location.href = "/ui/rules"; e.preventDefault(); }
      return;
    }
    if (key === "?") { if (help) help.showModal(); e.preventDefault(); }
    else if (key === "g") { pendingG = true; }
    else if (key === "j") { moveCursor(1); e.preventDefault(); }
    else if (key === "k") { moveCursor(-1); e.preventDefault(); }
    else if (key === "x") {
      const row = rows()[cursor];
      const box = row && row.querySelector('input[name="id"]');
      if (box) { box.checked = !box.checked; e.preventDefault(); }
    } else if (key === "o") {
      const row = rows()[cursor];
      const link = row && row.querySelector("a[href^='/ui/alerts/']");
      if (link) { link.click(); e.preventDefault(); }
    } else if (key === "f") {
      const field = document.querySelector(".filters select, .filters input:not([type=hidden])");
      if (field) { field.focus(); e.preventDefault(); }
    }
  });

  // The histogram: drag across it to search that span (a click on one bar
  // follows its link).
  const chart = document.getElementById("histogram");
  const brush = document.getElementById("brush");
  if (chart && brush) {
    const bars = Array.from(chart.querySelectorAll("rect[data-start]"));
    let from = null;
    const at = function (e) {
      const box = chart.getBoundingClientRect();
      return Math.max(0, Math.min(1000, (e.clientX - box.left) / box.width * 1000));
    };
    chart.addEventListener("mousedown", function (e) { from = at(e); e.preventDefault(); });
    chart.addEventListener("mousemove", function (e) {
      if (from === null) return;
      const to = at(e);
      brush.setAttribute("x", String(Math.min(from, to)));
      brush.setAttribute("width", String(Math.abs(to - from)));
    });
    document.addEventListener("mouseup", function (e) {
      if (from === null) return;
      const to = at(e);
      const lo = Math.min(from, to), hi = Math.max(from, to);
      from = null;
      brush.setAttribute("width", "0");
      if (hi - lo < 4) return;
      const inside = bars.filter(function (b) {
        const x = Number(b.getAttribute("x")), w = Number(b.getAttribute("width"));
        return x + w >= lo && x <= hi;
      });
      if (!inside.length) return;
      const url = new URL(window.location.href);
      url.searchParams.set("range", "custom");
      url.searchParams.set("from", inside[0].dataset.start);
      url.searchParams.set("to", inside[inside.length - 1].dataset.end);
      url.searchParams.delete("after");
      window.location.href = url.toString();
    });
  }

  // The system page refreshes itself every 10 s until paused.
  const refresh = document.getElementById("autorefresh");
  if (refresh) {
    let timer = setTimeout(function () { window.location.reload(); }, 10000);
    refresh.addEventListener("click", function () {
      const on = refresh.getAttribute("aria-pressed") !== "true";
      refresh.setAttribute("aria-pressed", String(on));
      refresh.textContent = on ? "Refreshing every 10 s: pause" : "Paused: refresh every 10 s";
      clearTimeout(timer);
      if (on) timer = setTimeout(function () { window.location.reload(); }, 10000);
    });
  }

  // A rule's problems: a click puts the cursor at the line and column.
  const yaml = document.getElementById("yaml");
  document.querySelectorAll("a[data-line]").forEach(function (a) {
    a.addEventListener("click", function (e) {
      const lines = yaml.value.split("\n");
      const line = Math.min(Number(a.dataset.line), lines.length);
      let at = 0;
      for (let i = 0; i < line - 1; i++) at += lines[i].length + 1;
      at += Math.max(0, Number(a.dataset.column) - 1);
      yaml.focus();
      yaml.setSelectionRange(at, at);
      yaml.scrollTop = (line - 3) * parseFloat(getComputedStyle(yaml).lineHeight || "18");
      e.preventDefault();
    });
  });

  // Live tail: every 2 s the events that arrived since, on top; pause
  // stops asking. Reading further down keeps its place as rows come in.
  const tail = document.getElementById("tail");
  if (tail) {
    let since = tail.dataset.since, paused = false, stopped = false, fresh = 0;
    const pause = document.getElementById("pause");
    const news = document.getElementById("tailnews");
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", String(paused));
    });
    const poll = function () {
      if (paused || document.hidden) { setTimeout(poll, 2000); return; }
      fetch(tail.dataset.tail + (tail.dataset.tail.includes("?") ? "&" : "?") + "since=" + since,
            { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) throw new Error(String(r.status));
          since = r.headers.get("X-Tail-Since") || since;
          return r.text();
        })
        .then(function (html) {
          const t = document.createElement("template");
          t.innerHTML = html;
          const rows = Array.from(t.content.querySelectorAll("tr[data-seq]")).filter(function (tr) {
            return !tail.querySelector('tr[data-seq="' + tr.dataset.seq + '"]');
          });
          if (rows.length) {
            const y = window.scrollY, height = document.documentElement.scrollHeight;
            const none = tail.querySelector("tr.none");
            if (none) none.remove();
            const block = document.createDocumentFragment();
            rows.forEach(function (tr) { block.appendChild(tr); });
            tail.insertBefore(block, tail.firstChild);
            while (tail.rows.length > 1000) tail.deleteRow(-1);
            if (y > 0) window.scrollTo(0, y + document.documentElement.scrollHeight - height);
            fresh += rows.length;
            news.textContent = fresh + " new";
          }
        })
        .catch(function () { news.textContent = "the live tail stopped: reload to resume"; stopped = true; })
        .finally(function () { if (!stopped) setTimeout(poll, 2000); });
    };
    setTimeout(poll, 2000);
  }

  // Live queue: changed alerts update in place; new ones are announced,
  // never inserted under the reader's eyes.
  const live = document.getElementById("live");
  if (live && window.EventSource) {
    const source = new EventSource("/ui/alerts/live");
    source.addEventListener("alert", function (msg) {
      let alert;
      try { alert = JSON.parse(msg.data); } catch (_) { return; }
      const row = document.querySelector('tbody tr[data-id="' + String(alert.id).replace(/[^0-9]/g, "") + '"]');
      if (row) {
        const status = row.querySelector(".status");
        if (status) { status.textContent = alert.status; status.dataset.status = alert.status; }
        const count = row.querySelector(".num");
        if (count) count.textContent = String(alert.count);
      } else if (alert.new) {
        live.hidden = false;
      }
    });
  }
})();

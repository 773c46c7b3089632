// Engine Hub dashboard behaviour. Loaded as a static file (the CSP forbids inline scripts).
(() => {
  "use strict";

  // 1. Defence in depth: swapped-in content may never carry scripts or inline handlers, and htmx may
  //    never evaluate JavaScript. Engine text is escaped by the server; this guards against our bugs.
  htmx.registerExtension("engine-hub-guard", {
    htmx_before_swap: (elt, detail) => {
      for (const task of detail.tasks || []) {
        const fragment = task.fragment;
        if (!fragment || !fragment.querySelectorAll) continue;
        fragment.querySelectorAll("script").forEach((node) => node.remove());
        fragment.querySelectorAll("*").forEach((node) => {
          for (const attr of Array.from(node.attributes)) {
            const name = attr.name.toLowerCase();
            if (name.startsWith("on") || name.startsWith("hx-on") || name.startsWith("data-hx-on")) {
              node.removeAttribute(attr.name);
            }
          }
        });
      }
    },
    htmx_scope: () => {
      throw new Error("engine-hub: JavaScript evaluation is disabled");
    },
  });

  // 2. This browser's connection state, from the hx-ws extension's events.
  const setConn = (state, text) => {
    const el = document.getElementById("conn");
    if (!el) return;
    el.className = el.className.replace(/\bconn-\w+/g, "").trim() + " conn-" + state;
    el.textContent = text;
    document.body.dataset.conn = state;
  };
  document.addEventListener("htmx:ws:after:connection", () => setConn("live", "live"));
  document.addEventListener("htmx:ws:close", () => setConn("reconnecting", "reconnecting…"));
  document.addEventListener("htmx:ws:error", () => setConn("reconnecting", "reconnecting…"));

  // 2b. A sign-in that ended must not reconnect forever. The hub closes a live socket with 1008
  //     when its sign-in ends, and refuses a new one before accepting it (HTTP 403), which the
  //     browser reports only as 1006 — as it does a hub that is down. So ask the page itself:
  //     if it now redirects (to /login) or answers 401, go and sign in; otherwise keep reconnecting.
  let checking = false;
  const checkSignIn = async () => {
    if (checking) return;
    checking = true;
    const here = location.pathname + location.search;
    try {
      const response = await fetch(here, { method: "HEAD", redirect: "manual", cache: "no-store" });
      if (response.type === "opaqueredirect" || response.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(here));
      }
    } catch (error) {
      // The hub is unreachable: hx-ws keeps reconnecting with backoff.
    } finally {
      checking = false;
    }
  };
  document.addEventListener("htmx:ws:close", (event) => {
    const code = event.detail && event.detail.code;
    if (code === 1008 || code === 1006) checkSignIn();
  });

  // 3. Ages ("3 s ago", uptime) stay current without any traffic: the server renders them (so the
  //    first paint is right without JavaScript) and stamps Unix times; this only keeps them ticking.
  //    The formats match hub/live/templating.py's `ago` and `duration` filters.
  const serverNow = parseFloat(document.body.dataset.serverNow || "0");
  const skew = serverNow ? serverNow - Date.now() / 1000 : 0;
  const ago = (s) => (s < 1 ? "just now" : s < 90 ? `${Math.floor(s)} s ago` : s < 5400 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`);
  const duration = (s) => {
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${h}h` : h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(s % 60).padStart(2, "0")}s`;
  };
  const tick = () => {
    const now = Date.now() / 1000 + skew;
    document.querySelectorAll("[data-since]").forEach((el) => {
      const since = parseFloat(el.dataset.since);
      if (!Number.isFinite(since)) return;
      el.textContent = el.dataset.style === "duration" ? duration(now - since) : ago(now - since);
    });
  };
  setInterval(tick, 1000);

  // 3b. Times: the server writes <time data-ts> in UTC; the viewer may prefer local time. The
  //     choice is remembered in this browser and applied to every time, including swapped-in ones.
  const TZ_KEY = "engine-hub.tz";
  const pad = (n) => String(n).padStart(2, "0");
  const readZone = () => {
    try {
      return localStorage.getItem(TZ_KEY) === "local" ? "local" : "utc";
    } catch (error) {
      return "utc"; // storage disabled: UTC, as the server renders
    }
  };
  let zone = readZone();
  const showTimes = () => {
    document.querySelectorAll("time[data-ts]").forEach((el) => {
      const date = new Date(parseFloat(el.dataset.ts) * 1000);
      if (Number.isNaN(date.getTime())) return;
      const local = zone === "local";
      const parts = local
        ? [date.getHours(), date.getMinutes(), date.getSeconds()]
        : [date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()];
      const text = parts.map(pad).join(":");
      if (el.textContent !== text) el.textContent = text;
      el.title = local ? date.toString() : date.toISOString();
    });
    // Column headings say which zone the times are in: "time (UTC)" or "time (local)".
    const label = zone === "local" ? "(local)" : "(UTC)";
    document.querySelectorAll("th").forEach((th) => {
      if (/\((UTC|local)\)$/.test(th.textContent) && !th.textContent.endsWith(label)) {
        th.textContent = th.textContent.replace(/\((UTC|local)\)$/, label);
      }
    });
    const button = document.getElementById("tz-toggle");
    if (button) {
      button.textContent = zone === "local" ? "local time" : "UTC";
      button.setAttribute("aria-pressed", String(zone === "local"));
    }
    document.documentElement.dataset.tz = zone;
  };
  const addToggle = () => {
    const bar = document.querySelector(".topbar");
    if (!bar || document.getElementById("tz-toggle")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.id = "tz-toggle";
    button.className = "tz-toggle";
    button.title = "show times in UTC or in this computer's time zone";
    button.addEventListener("click", () => {
      zone = zone === "local" ? "utc" : "local";
      try {
        localStorage.setItem(TZ_KEY, zone);
      } catch (error) {
        // storage disabled: the choice lasts for this page only
      }
      showTimes();
    });
    const conn = document.getElementById("conn");
    bar.insertBefore(button, conn);
  };

  // 3c. The tab title carries the problem count, as the pushed hub status says it.
  //     An engine's page keeps its engine first: "equity · (1) Engine Hub — 1 offline".
  const showTitle = () => {
    const status = document.getElementById("hub-status");
    if (!status || !status.dataset.title) return;
    const crumb = document.querySelector(".topbar .crumb");
    let title = crumb ? `${crumb.textContent.trim()} · ${status.dataset.title}` : status.dataset.title;
    //     Firing alerts too, as the top bar's badge counts them ("… · 2 alerts firing").
    const badge = document.getElementById("alert-badge");
    if (badge && !badge.hidden && /^[1-9]/.test(badge.textContent.trim())) {
      title += ` · ${badge.textContent.trim()}`;
    }
    if (document.title !== title) document.title = title;
  };

  // 3d. A truncated cell shows its whole text on hover (CSS ellipsis; never clipped silently).
  document.addEventListener("pointerover", (event) => {
    const cell = event.target instanceof Element ? event.target.closest("td, th") : null;
    if (!cell || cell.title) return;
    const cut = [cell, ...cell.querySelectorAll("bdi")].some((el) => el.scrollWidth > el.clientWidth);
    if (cut) cell.title = cell.textContent.trim();
  });

  const refresh = () => {
    tick();
    showTimes();
    showTitle();
  };
  document.addEventListener("htmx:after:swap", refresh);
  document.addEventListener("DOMContentLoaded", () => {
    addToggle();
    refresh();
  });

  // 4. Log level filter on engine pages: a class on <body>, so it survives fragment swaps.
  document.addEventListener("change", (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || select.id !== "level-filter") return;
    document.body.className = document.body.className.replace(/\bmin-\w+/g, "").trim();
    if (select.value) document.body.classList.add("min-" + select.value.toLowerCase());
  });
})();

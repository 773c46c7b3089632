// Overview filters: by engine, mode and text, kept in the URL (?engine=<hub index>&mode=&q=).
// Rows carry hub-derived data-engine (the engine's index) and data-mode (live|paper); the server
// renders every table once per tick for all browsers, and each browser hides what it filters out,
// again after every swap. Loaded as a static file with defer (the CSP forbids inline scripts).
(() => {
  "use strict";

  const form = document.getElementById("filters");
  const live = document.getElementById("live");
  if (!form || !live) return;
  const engineSelect = form.elements.namedItem("engine");
  const modeSelect = form.elements.namedItem("mode");
  const textInput = form.elements.namedItem("q");
  const MAX_TEXT = 100;

  // The filter as the URL states it; anything malformed means "no filter" for that part.
  const fromUrl = () => {
    const params = new URLSearchParams(location.search);
    const engine = params.get("engine") || "";
    const mode = params.get("mode") || "";
    return {
      engine: /^\d{1,9}$/.test(engine) ? engine : "",
      mode: mode === "live" || mode === "paper" ? mode : "",
      q: (params.get("q") || "").slice(0, MAX_TEXT),
    };
  };
  const fromControls = () => ({
    engine: engineSelect.value,
    mode: modeSelect.value,
    q: textInput.value.slice(0, MAX_TEXT),
  });

  const urlOf = (filter) => {
    const params = new URLSearchParams(location.search);
    for (const key of ["engine", "mode", "q"]) {
      if (filter[key]) params.set(key, filter[key]);
      else params.delete(key);
    }
    const query = params.toString();
    return location.pathname + (query ? "?" + query : "") + location.hash;
  };

  // Engine options follow the cards (engines join and leave); option text is the engine's name
  // as the card shows it, the value its hub index. A selected engine that is gone stays listed.
  const syncEngines = () => {
    const selected = engineSelect.value;
    const engines = Array.from(document.querySelectorAll("#cards .card[id^='card-']"), (card) => ({
      index: card.id.slice("card-".length),
      name: (card.querySelector("a.name") || card).textContent.trim(),
    })).filter((e) => /^\d+$/.test(e.index));
    engines.sort((a, b) => a.name.localeCompare(b.name));
    if (selected && !engines.some((e) => e.index === selected)) {
      engines.push({ index: selected, name: `engine #${selected} (not connected)` });
    }
    const current = Array.from(engineSelect.options).slice(1).map((o) => o.value + "\u0000" + o.textContent);
    const wanted = engines.map((e) => e.index + "\u0000" + e.name);
    if (current.join("\u0001") === wanted.join("\u0001")) return;
    while (engineSelect.options.length > 1) engineSelect.remove(1);
    for (const e of engines) engineSelect.add(new Option(e.name, e.index));
    engineSelect.value = selected;
  };

  const apply = () => {
    const filter = fromControls();
    const needle = filter.q.trim().toLowerCase();
    document.body.classList.toggle("filtering", Boolean(filter.engine || filter.mode || needle));
    live.querySelectorAll(".filterable").forEach((section) => {
      let shown = 0;
      const rows = section.querySelectorAll("tbody tr, ol.loglines li");
      rows.forEach((row) => {
        const keep =
          (!filter.engine || row.dataset.engine === filter.engine) &&
          (!filter.mode || row.dataset.mode === filter.mode) &&
          (!needle || row.textContent.toLowerCase().includes(needle));
        row.hidden = !keep;
        shown += keep ? 1 : 0;
      });
      const note = section.querySelector(".filtered-out");
      if (note) note.hidden = shown > 0 || rows.length === 0;
    });
  };

  const show = (filter) => {
    syncEngines();
    if (filter.engine && !Array.from(engineSelect.options).some((o) => o.value === filter.engine)) {
      engineSelect.add(new Option(`engine #${filter.engine} (not connected)`, filter.engine));
    }
    engineSelect.value = filter.engine;
    modeSelect.value = filter.mode;
    textInput.value = filter.q;
    apply();
  };

  // A choice is a step in history (back undoes it); typing rewrites the current step.
  form.addEventListener("change", (event) => {
    if (event.target === textInput) return;
    history.pushState(null, "", urlOf(fromControls()));
    apply();
  });
  textInput.addEventListener("input", () => {
    history.replaceState(null, "", urlOf(fromControls()));
    apply();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // without JavaScript the form reloads the page with the query
    history.replaceState(null, "", urlOf(fromControls()));
    apply();
  });
  window.addEventListener("popstate", () => show(fromUrl()));

  // Swapped-in rows (snapshots and live pushes) are filtered as soon as they land.
  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      syncEngines();
      apply();
    });
  }).observe(live, { childList: true, subtree: true });

  show(fromUrl());
})();

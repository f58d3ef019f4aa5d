// autointerp review pages: sort, filter and page the leaderboard in place. Reads cell text only; writes no HTML.
"use strict";
(function () {
  const table = document.getElementById("leaderboard");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const pageSize = 100;
  let shown = rows, page = 0;
  const $ = (id) => document.getElementById(id);
  const info = $("page-info"), search = $("filter-text");
  const selects = ["filter-layer", "filter-kind", "filter-explainer"].map($).filter(Boolean);
  const minScore = $("filter-min");

  function value(row, key, numeric) {
    if (key === "text") return row.cells[row.cells.length - 1].textContent;
    const v = row.dataset[key];
    if (!numeric) return v || "";
    return v === undefined || v === "" ? -Infinity : Number(v);
  }
  function render() {
    const pages = Math.max(1, Math.ceil(shown.length / pageSize));
    page = Math.min(page, pages - 1);
    const start = page * pageSize, end = start + pageSize;
    for (const r of rows) r.hidden = true;
    const frag = document.createDocumentFragment();
    shown.forEach((r, i) => { if (i >= start && i < end) r.hidden = false; frag.appendChild(r); });
    const inShown = new Set(shown);
    for (const r of rows) if (!inShown.has(r)) frag.appendChild(r);
    body.appendChild(frag);
    info.textContent = shown.length
      ? `units ${start + 1}–${Math.min(end, shown.length)} of ${shown.length} (page ${page + 1} of ${pages})`
      : "no unit matches the filters";
    $("page-prev").disabled = page === 0;
    $("page-next").disabled = page >= pages - 1;
  }
  function filter() {
    const text = (search.value || "").toLowerCase();
    const min = minScore && minScore.value !== "" ? Number(minScore.value) : null;
    shown = rows.filter((r) => {
      for (const s of selects) if (s.value && value(r, s.dataset.key) !== s.value) return false;
      if (min !== null && !(value(r, "score", true) >= min)) return false;
      return !text || r.textContent.toLowerCase().includes(text);
    });
    page = 0;
    const active = table.querySelector("th[aria-sort]");
    if (active) sortBy(active, active.getAttribute("aria-sort") === "ascending", false);
    else render();
  }
  function sortBy(th, ascending, toggle) {
    const key = th.dataset.sort, numeric = th.dataset.type === "num";
    if (toggle) ascending = th.getAttribute("aria-sort") === "descending" ? true
      : th.getAttribute("aria-sort") === "ascending" ? false : !numeric;
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const sign = ascending ? 1 : -1;
    shown.sort((a, b) => {
      const x = value(a, key, numeric), y = value(b, key, numeric);
      const c = numeric ? (x === y ? 0 : x < y ? -1 : 1) : x.localeCompare(y, undefined, { numeric: true });
      return c * sign || Number(a.dataset.order) - Number(b.dataset.order);
    });
    render();
  }
  for (const th of table.tHead.rows[0].cells) {
    if (th.dataset.sort) th.addEventListener("click", () => sortBy(th, true, true));
  }
  search.addEventListener("input", filter);
  for (const s of selects) s.addEventListener("change", filter);
  if (minScore) minScore.addEventListener("input", filter);
  $("page-prev").addEventListener("click", () => { page -= 1; render(); });
  $("page-next").addEventListener("click", () => { page += 1; render(); });
  render();
})();

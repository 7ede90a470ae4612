// {compare-sources} (docs/_ext/pagedkv_compare.py): below 900 px, one tab per column and one
// column at a time; from 900 px the two columns side by side (CSS). Without this script the
// columns are stacked. The tab buttons carry the column labels, already translated on the page.
(function () {
  "use strict";
  const NARROW = "(max-width: 900px)";  // the same width as in pagedkv.css
  const zh = (document.documentElement.lang || "").toLowerCase().startsWith("zh");
  const TEXT = zh ? {tabs: "选择要显示的版本"} : {tabs: "Choose the version to show"};
  let counter = 0;

  function setUp(block) {
    const grid = block.querySelector(":scope > .pagedkv-cmp-grid");
    if (!grid) return;
    const columns = [...grid.children].filter((c) => c.classList.contains("pagedkv-cmp-col"));
    if (columns.length < 2) return;
    const base = "pagedkv-cmp-" + ++counter;
    const tablist = document.createElement("div");
    tablist.className = "pagedkv-cmp-tabs";
    tablist.setAttribute("role", "tablist");
    tablist.setAttribute("aria-label", TEXT.tabs);
    const tabs = columns.map((column, i) => {
      const label = column.querySelector(".pagedkv-cmp-label");
      const tab = document.createElement("button");
      tab.type = "button";
      tab.className = "pagedkv-cmp-tab";
      tab.id = `${base}-tab-${i}`;
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", (column.id ||= `${base}-col-${i}`));
      tab.innerHTML = label ? label.innerHTML : String(i + 1);
      tab.addEventListener("click", () => select(i));
      tab.addEventListener("keydown", (event) => {
        const last = tabs.length - 1;
        const next = {ArrowRight: i === last ? 0 : i + 1, ArrowLeft: i === 0 ? last : i - 1,
                      Home: 0, End: last}[event.key];
        if (next === undefined) return;
        event.preventDefault();
        select(next);
        tabs[next].focus();
      });
      tablist.appendChild(tab);
      return tab;
    });

    function select(chosen) {
      tabs.forEach((tab, i) => {
        tab.setAttribute("aria-selected", String(i === chosen));
        tab.tabIndex = i === chosen ? 0 : -1;
        columns[i].classList.toggle("pagedkv-cmp-active", i === chosen);
      });
    }

    // The columns are tab panels only while the tabs show (narrow screens).
    const narrow = window.matchMedia(NARROW);
    function layout() {
      columns.forEach((column, i) => {
        if (narrow.matches) {
          column.setAttribute("role", "tabpanel");
          column.setAttribute("aria-labelledby", tabs[i].id);
        } else {
          column.removeAttribute("role");
          column.removeAttribute("aria-labelledby");
        }
      });
    }
    narrow.addEventListener("change", layout);
    grid.before(tablist);
    select(0);
    layout();
    block.classList.add("pagedkv-cmp-tabbed");
  }

  function setUpAll() {
    document.querySelectorAll(".pagedkv-compare").forEach(setUp);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUpAll);
  } else {
    setUpAll();
  }
})();

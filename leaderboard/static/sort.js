// Sort the leaderboard tables by a clicked column heading. No libraries; works from file://.
// Numbers sort numerically (data-value), text case-insensitively; empty values always go last.
// A first click sorts by the column's data-first-dir (best first for scores), a second reverses.
(function () {
  "use strict";

  function valueOf(row, index, numeric) {
    var raw = row.cells[index].getAttribute("data-value") || "";
    if (!numeric) { return raw.toLowerCase(); }
    var number = parseFloat(raw);
    return isNaN(number) ? null : number;
  }

  function compare(a, b, numeric, sign) {
    if (a === null || a === "") { return b === null || b === "" ? 0 : 1; }
    if (b === null || b === "") { return -1; }
    if (numeric) { return sign * (a - b); }
    return sign * (a < b ? -1 : a > b ? 1 : 0);
  }

  function sortTable(table, th) {
    var numeric = th.getAttribute("data-sort") === "number";
    var current = th.getAttribute("aria-sort");
    var first = th.getAttribute("data-first-dir") || (numeric ? "descending" : "ascending");
    var dir = current === "ascending" ? "descending" : current === "descending" ? "ascending" : first;
    var sign = dir === "ascending" ? 1 : -1;
    var index = th.cellIndex;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var order = compare(valueOf(r1, index, numeric), valueOf(r2, index, numeric), numeric, sign);
      // Equal values keep the default (rank) order, so a sort is deterministic.
      return order !== 0 ? order : parseInt(r1.getAttribute("data-order"), 10) - parseInt(r2.getAttribute("data-order"), 10);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    table.setAttribute("data-sort-key", th.getAttribute("data-key"));
    table.setAttribute("data-sort-dir", dir);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.leaderboard"), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll("thead th[data-sort]"), function (th) {
      th.addEventListener("click", function () { sortTable(table, th); });
    });
    table.classList.add("sortable-ready");
  });
})();

// Go to the precomputed page of the pair picked in the two menus (pages exist for every pair).
(function () {
  "use strict";
  var form = document.getElementById("compare-form");
  if (!form) { return; }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var a = document.getElementById("compare-a").value;
    var b = document.getElementById("compare-b").value;
    var message = document.getElementById("compare-message");
    if (a === b) { message.textContent = "Pick two different entries."; return; }
    // The pair lists carry both slugs; follow the matching link in either order.
    var items = document.querySelectorAll("li.pair");
    for (var i = 0; i < items.length; i++) {
      var x = items[i].getAttribute("data-a"), y = items[i].getAttribute("data-b");
      if ((x === a && y === b) || (x === b && y === a)) {
        window.location.href = items[i].querySelector("a").getAttribute("href");
        return;
      }
    }
    message.textContent = "No page for this pair.";
  });
  form.classList.add("compare-ready");
})();

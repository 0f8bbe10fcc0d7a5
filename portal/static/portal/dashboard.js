// The live dashboard: renders each snapshot the server pushes (portal/dashboard.py), and reconnects.
(function () {
  "use strict";
  var status = document.getElementById("dashboard-status");
  function gib(bytes) { return (bytes / 1073741824).toFixed(1) + " GiB"; }
  function cell(row, text, label, header) {
    var el = document.createElement(header ? "th" : "td");
    if (header) { el.scope = "row"; }
    el.dataset.label = label;
    el.textContent = text;
    row.appendChild(el);
    return el;
  }
  function fill(id, items, columns) {
    var body = document.querySelector("#" + id + " tbody");
    body.replaceChildren.apply(body, items.map(function (item) {
      var row = document.createElement("tr");
      row.dataset.key = item.model || item.node;
      columns.forEach(function (column, i) { cell(row, column[1](item), column[0], i === 0).dataset.field = column[2]; });
      return row;
    }));
  }
  function render(data) {
    fill("dashboard-models", data.models, [
      ["Model", function (m) { return m.model; }, "model"],
      ["Waiting", function (m) { return String(m.queue_depth); }, "queue_depth"],
      ["Running", function (m) { return String(m.running); }, "running"],
      ["Loading", function (m) { return m.loading_on ? "on " + m.loading_on + " server" + (m.loading_on === 1 ? "" : "s") : "no"; }, "loading_on"],
      ["503s", function (m) { return String(m.rejected_503); }, "rejected_503"],
      ["429s", function (m) { return String(m.rejected_429); }, "rejected_429"],
    ]);
    fill("dashboard-nodes", data.nodes, [
      ["Node", function (n) { return n.name; }, "node"],
      ["State", function (n) { return n.state; }, "state"],
      ["Memory used", function (n) {
        return gib(n.memory_used_bytes) + (n.memory_budget_bytes ? " of " + gib(n.memory_budget_bytes) : "");
      }, "memory"],
      ["Loaded models", function (n) {
        return n.loaded.map(function (m) { return m.model + " (" + gib(m.bytes) + ")"; }).join(", ") || "none";
      }, "loaded"],
    ]);
    status.textContent = "Updated " + new Date(data.at * 1000).toLocaleTimeString();
    document.body.dataset.snapshotAt = String(data.at);
  }
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/dashboard/");
    socket.onmessage = function (event) { render(JSON.parse(event.data)); };
    socket.onclose = function () {
      status.textContent = "Disconnected; reconnecting…";
      setTimeout(connect, 2000);
    };
  }
  connect();
})();

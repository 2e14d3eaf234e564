// The transparency page's live view: each recorded event (after redaction), received over the
// api/telemetry/subscribe websocket, counted per schema and listed newest first.
// Plain browser JavaScript, no build step and no dependency: the page works offline.
(() => {
  "use strict";

  const MAX_SHOWN = 100;
  const RETRY_MS = [1000, 2000, 5000, 10000, 30000];
  const body = document.body;
  const status = document.getElementById("live-status");
  const filter = document.getElementById("live-filter");
  const counts = document.querySelector("#live-counts tbody");
  const list = document.getElementById("live-events");
  const empty = document.getElementById("live-empty");
  let failures = 0;
  let dropped = 0;

  // Logging in with ?token=... leaves the token in the address bar: take it out, as Jupyter does.
  function removeTokenFromUrl() {
    const url = new URL(window.location.href);
    if (url.searchParams.has("token")) {
      url.searchParams.delete("token");
      window.history.replaceState({}, "", url.toString());
    }
  }

  function subscribeUrl() {
    const base = body.dataset.baseUrl || "/";
    const origin = body.dataset.wsUrl || window.location.origin.replace(/^http/, "ws");
    return origin + base + "api/telemetry/subscribe";
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function countRow(schemaId) {
    for (const row of counts.rows) {
      if (row.dataset.schemaId === schemaId) {
        return row;
      }
    }
    const row = counts.insertRow();
    row.dataset.schemaId = schemaId;
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = schemaId;
    row.appendChild(name);
    const count = row.insertCell();
    count.className = "count";
    count.textContent = "0";
    return row;
  }

  function titleOf(schemaId) {
    const row = countRow(schemaId);
    return row.cells[0].textContent;
  }

  function count(schemaId) {
    const cell = countRow(schemaId).querySelector(".count");
    cell.textContent = String(Number(cell.textContent) + 1);
  }

  function valueText(value) {
    if (value === null) {
      return "empty";
    }
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function fields(capsule) {
    const dl = document.createElement("dl");
    for (const [key, value] of Object.entries(capsule)) {
      if (key.startsWith("__")) {
        continue;
      }
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = valueText(value);
      if (value === null) {
        dd.className = "empty";
      }
      dl.append(dt, dd);
    }
    return dl;
  }

  function eventItem(capsule) {
    const schemaId = String(capsule.__schema__);
    const item = document.createElement("li");
    item.dataset.schemaId = schemaId;
    const when = document.createElement("time");
    when.dateTime = capsule.__timestamp__;
    const date = new Date(capsule.__timestamp__);
    when.textContent = isNaN(date) ? capsule.__timestamp__ : date.toLocaleTimeString();
    const title = document.createElement("strong");
    title.textContent = titleOf(schemaId);
    item.append(when, " ", title, fields(capsule));
    return item;
  }

  function applyFilter() {
    const wanted = filter.value;
    let shown = 0;
    for (const item of list.children) {
      item.hidden = Boolean(wanted) && item.dataset.schemaId !== wanted;
      shown += item.hidden ? 0 : 1;
    }
    empty.hidden = shown > 0;
  }

  function receive(capsule) {
    if (typeof capsule.__dropped__ === "number") {
      dropped += capsule.__dropped__;
      setStatus("open", `Connected. ${dropped} events were missed: the page fell behind.`);
      return;
    }
    count(String(capsule.__schema__));
    list.prepend(eventItem(capsule));
    while (list.children.length > MAX_SHOWN) {
      list.lastElementChild.remove();
    }
    applyFilter();
  }

  function connect() {
    const socket = new WebSocket(subscribeUrl());
    socket.onopen = () => {
      failures = 0;
      setStatus("open", "Connected: new events appear below as they are recorded.");
    };
    socket.onmessage = (message) => receive(JSON.parse(message.data));
    socket.onclose = () => {
      const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
      failures += 1;
      setStatus("closed", `Not connected; trying again in ${wait / 1000} s.`);
      window.setTimeout(connect, wait);
    };
  }

  removeTokenFromUrl();
  filter.addEventListener("change", applyFilter);
  applyFilter();
  connect();
})();

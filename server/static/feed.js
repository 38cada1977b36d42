// The live feed: new entries from the server's event stream go on top.
// Without JavaScript the page still lists the latest entries.
(function () {
  "use strict";
  var list = document.getElementById("feed");
  var state = document.getElementById("feed-state");
  if (!list || !window.EventSource) { return; }
  var after = list.getAttribute("data-after");
  var source = new EventSource("/feed/stream?after=" + encodeURIComponent(after));
  source.addEventListener("feed", function (event) {
    var item = JSON.parse(event.data);
    var entry = document.createElement("li");
    entry.setAttribute("data-id", String(item.id));
    var when = document.createElement("time");
    when.setAttribute("datetime", item.at);
    when.textContent = item.at.replace("T", " ").slice(0, 16);
    entry.appendChild(when);
    if (item.person) {
      var who = document.createElement("a");
      who.href = "/people?email=" + encodeURIComponent(item.person);
      who.textContent = item.person;
      entry.appendChild(who);
      entry.appendChild(document.createTextNode(" "));
    }
    var message = document.createElement("span");
    message.className = "message";
    message.textContent = item.message;  // text, never markup: the feed holds people's data
    entry.appendChild(message);
    list.insertBefore(entry, list.firstChild);
  });
  source.onerror = function () { state.textContent = "Reconnecting…"; };
  source.onopen = function () { state.textContent = "New entries appear as they happen."; };
}());

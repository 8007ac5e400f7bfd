// Resonate inspector: swap server-rendered fragments when something changes.
(function () {
  "use strict";
  let source = null;
  const $ = (id) => document.getElementById(id);

  async function swap(id, url) {
    const resp = await fetch(url);
    if (resp.ok) { $(id).innerHTML = await resp.text(); }
  }

  function showListener(user) {
    $("listener").dataset.user = user;
    const url = new URL(window.location);
    url.searchParams.set("user", user);
    window.history.replaceState(null, "", url);
    if (source) { source.close(); source = null; }
    if (!user) { return; }
    const path = encodeURIComponent(user);
    source = new EventSource("/users/" + path + "/events");
    source.addEventListener("update", () => swap("listener", "/inspector/fragments/listener/" + path));
    source.onopen = () => $("live").classList.add("on");
    source.onerror = () => $("live").classList.remove("on");
  }

  $("pick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    showListener($("user-input").value.trim() || $("user-select").value);
  });
  $("user-select").addEventListener("change", () => {
    $("user-input").value = $("user-select").value;
    showListener($("user-select").value);
  });
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a.track");
    if (!a) { return; }
    ev.preventDefault();
    swap("track", "/inspector/fragments/track/" + encodeURIComponent(a.dataset.track));
  });
  setInterval(() => swap("pipeline", "/inspector/fragments/pipeline"), 3000);
  showListener($("listener").dataset.user);
})();

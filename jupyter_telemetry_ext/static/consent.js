// The transparency page's studies: each button takes the user's decision on the version shown
// with PUT api/telemetry/consent/<study>, then reloads the page to show the new state.
// Plain browser JavaScript, no build step and no dependency: the page works offline.
(() => {
  "use strict";

  const body = document.body;
  const status = document.getElementById("study-status");

  function decisionUrl(study) {
    return (body.dataset.baseUrl || "/") + "api/telemetry/consent/" + encodeURIComponent(study);
  }

  // jupyter_server accepts a cookie-authenticated PUT only with the page's XSRF token.
  function headers() {
    const found = document.cookie.match("\\b_xsrf=([^;]*)\\b");
    const token = body.dataset.xsrf || (found ? decodeURIComponent(found[1]) : "");
    return { "Content-Type": "application/json", "X-XSRFToken": token };
  }

  async function decide(article, decision) {
    const study = article.dataset.study;
    const version = Number(article.dataset.version);
    status.textContent = "Saving your decision…";
    let response;
    try {
      response = await fetch(decisionUrl(study), {
        method: "PUT",
        credentials: "same-origin",
        headers: headers(),
        body: JSON.stringify({ decision, version }),
      });
    } catch (error) {
      status.textContent = "The server cannot be reached: nothing was changed. Try again.";
      return;
    }
    if (response.status === 409) {
      status.textContent = "This study has a new version: read it again before deciding.";
      window.setTimeout(() => window.location.reload(), 1500);
      return;
    }
    if (!response.ok) {
      const reply = await response.json().catch(() => ({}));
      status.textContent = `Not saved (${response.status}${reply.message ? ": " + reply.message : ""}).`;
      return;
    }
    status.textContent = "Saved.";
    window.location.reload();
  }

  for (const article of document.querySelectorAll("#studies article.study")) {
    for (const button of article.querySelectorAll("button[data-decision]")) {
      button.addEventListener("click", () => {
        for (const other of article.querySelectorAll("button")) {
          other.disabled = true;
        }
        decide(article, button.dataset.decision).finally(() => {
          for (const other of article.querySelectorAll("button")) {
            other.disabled = false;
          }
        });
      });
    }
  }
})();

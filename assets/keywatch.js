// keywatch dashboard: refreshes the page's content in place every minute, keeping the scroll
// position, while the tab is visible and no form field is being edited. Pages work without it.
'use strict';
(function () {
  const every = Number(document.body.dataset.refresh || 0);
  async function refresh() {
    // Not while hidden, nor while the reader is on a field, link or button (focus would move).
    const active = document.activeElement;
    if (document.hidden || (active && active !== document.body)) {
      return false;
    }
    const response = await fetch(location.href, { credentials: 'same-origin' });
    if (response.status === 401 || response.redirected) {
      // The session ended (expired, or signed out elsewhere): show the sign-in form.
      location.reload();
      return false;
    }
    if (!response.ok) {
      return false;
    }
    const next = new DOMParser().parseFromString(await response.text(), 'text/html');
    const fresh = next.querySelector('main');
    const main = document.querySelector('main');
    if (!fresh || !main) {
      return false;
    }
    const [x, y] = [window.scrollX, window.scrollY];
    main.replaceWith(document.adoptNode(fresh));
    window.scrollTo(x, y);
    return true;
  }
  window.keywatchRefresh = refresh;
  if (every > 0) {
    setInterval(() => { refresh().catch(() => {}); }, every * 1000);
  }
})();

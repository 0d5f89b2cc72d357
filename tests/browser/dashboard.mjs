// The dashboard in a real browser at a laptop's and a phone's width: sign-in (and a wrong token
// refused), no horizontal overflow on any page, chart axes present and legible, key search.
// Screenshots go to $ARTIFACTS. Run by tests/integration/dashboard.rs with BASE, TOKEN,
// CHROMIUM and ARTIFACTS set; exits non-zero naming the first failed check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const { BASE, TOKEN, CHROMIUM, ARTIFACTS } = process.env;
mkdirSync(ARTIFACTS, { recursive: true });
const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu'],
});
const widths = [
  ['laptop', 1400, 900],
  ['phone', 390, 844],
];
const pages = [
  ['overview', '/'],
  ['keys', '/keys'],
  ['key-spike', '/keys/apikey_spiky?source=anthropic-test'],
  ['alerts', '/alerts'],
];
try {
  for (const [device, width, height] of widths) {
    const context = await browser.newContext({ viewport: { width, height } });
    const page = await context.newPage();
    const cspErrors = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
    });

    // A wrong token is refused and sets no session.
    await page.goto(`${BASE}/`);
    check(page.url().includes('/login'), `${device}: a page without a session goes to the sign-in form`);
    await page.fill('#token', 'not-the-token');
    const [wrong] = await Promise.all([
      page.waitForNavigation(),
      page.click('button[type=submit]'),
    ]);
    check(wrong.status() === 401, `${device}: a wrong token is refused (HTTP ${wrong.status()})`);
    check((await context.cookies()).length === 0, `${device}: a wrong token sets no cookie`);

    // The right one signs in and lands where it was going.
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    check(new URL(page.url()).pathname === '/', `${device}: signed in, back on the overview`);
    const cookie = (await context.cookies()).find((c) => c.name === 'keywatch_session');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `${device}: the session cookie is HttpOnly and SameSite=Strict`);

    for (const [name, path] of pages) {
      const response = await page.goto(`${BASE}${path}`);
      check(response.status() === 200, `${device} ${name}: HTTP ${response.status()}`);
      const [scrollWidth, innerWidth] = await page.evaluate(() => [
        document.documentElement.scrollWidth,
        window.innerWidth,
      ]);
      check(scrollWidth <= innerWidth, `${device} ${name}: no horizontal overflow (${scrollWidth} <= ${innerWidth})`);
      const charts = await page.evaluate(() =>
        [...document.querySelectorAll('svg.chart')]
          .filter((s) => s.getBoundingClientRect().width > 0)
          .map((s) => ({
            titles: [...s.querySelectorAll('text.axis-title')].length,
            ticks: [...s.querySelectorAll('text.tick')].length,
            tickPx: Math.min(...[...s.querySelectorAll('text.tick')].map((t) => t.getBoundingClientRect().height)),
          })),
      );
      if (name === 'overview' || name === 'key-spike') {
        // One drawing per chart at this width (the overview has one chart; a key page has its
        // buckets and, with the minute check on, its recent minutes).
        const expected = name === 'overview' ? 1 : [1, 2];
        check([].concat(expected).includes(charts.length), `${device} ${name}: one drawing per chart for this width (${charts.length})`);
        for (const c of charts) {
          check(c.titles === 2 && c.ticks >= 4, `${device} ${name}: axis titles and tick labels (${c.titles}, ${c.ticks})`);
          check(c.tickPx >= 9, `${device} ${name}: tick labels legible (${c.tickPx.toFixed(1)} px tall)`);
        }
      }
      await page.screenshot({ path: `${ARTIFACTS}/${name}-${device}.png`, fullPage: true });
    }

    // The in-place refresh keeps the reader where they were.
    await page.goto(`${BASE}/`);
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    const before = await page.evaluate(() => window.scrollY);
    const refreshed = await page.evaluate(() => window.keywatchRefresh());
    const after = await page.evaluate(() => window.scrollY);
    check(refreshed === true && before > 0 && after === before, `${device}: the refresh replaced the content and kept the scroll (${before} -> ${after})`);
    check(cspErrors.length === 0, `${device}: nothing blocked by the Content-Security-Policy (${cspErrors.join(' | ')})`);

    // Key search narrows the list.
    await page.goto(`${BASE}/keys`);
    await page.fill('input[name=q]', 'gateway');
    await Promise.all([page.waitForNavigation(), page.click('form.filters button')]);
    const rows = await page.locator('tr.key').count();
    check(rows === 1, `${device}: searching "gateway" leaves one key (${rows})`);

    // Signing out ends the session.
    await page.goto(`${BASE}/`);
    await Promise.all([page.waitForNavigation(), page.click('form.signout button')]);
    await page.goto(`${BASE}/alerts`);
    check(page.url().includes('/login'), `${device}: signed out, pages ask to sign in again`);
    await context.close();
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`${failures.length} check(s) failed: ${failures.join('; ')}`);
  process.exit(1);
}

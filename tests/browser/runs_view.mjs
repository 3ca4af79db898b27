// Drives Debian's Chromium through playwright-core against a running Airflow: the runs
// view refused anonymously, the login form, the rows, a run's page, a download, and the
// view embedded in Airflow's UI (screenshots). Prints one JSON object on stdout.
// Env: PLAYWRIGHT_CORE (module dir), CHROMIUM, BASE_URL, AF_USER, AF_PASSWORD,
// RUN_KEY (the DAG run's), SCREENSHOT_DIR.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR;
const out = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1800, height: 860 } });
  const page = await context.newPage();

  const anonymous = await page.goto(`${base}/handoff/runs`);
  out.anonymous_status = anonymous.status();
  out.anonymous_rows = await page.locator("tr[data-run-key]").count();

  await page.goto(`${base}/auth/login/`);
  await page.locator("input[name=username]").fill(process.env.AF_USER);
  await page.locator("input[name=password]").fill(process.env.AF_PASSWORD);
  await page.locator("button[type=submit]").click();
  await page.waitForFunction(() => !location.pathname.startsWith("/auth/login"), null, { timeout: 60000 });
  out.cookies = (await context.cookies()).map((c) => c.name);

  const listing = await page.goto(`${base}/handoff/runs`);
  out.status = listing.status();
  out.rows = await page.locator("tr[data-run-key]").evaluateAll((rows) =>
    rows.map((row) => ({
      run_key: row.dataset.runKey,
      status: row.querySelector("[data-role=status]")?.textContent.trim(),
      duration: row.querySelector("[data-role=duration]")?.textContent.trim(),
      bytes: row.querySelector("[data-role=bytes]")?.textContent.trim(),
      state: row.querySelector("[data-role=state]")?.textContent.trim(),
      interval: row.querySelector("[data-role=interval]")?.innerText.replace(/\s+/g, " ").trim(),
      interval_title: row.querySelector("[data-role=interval]")?.title,
      ti_link: row.querySelector("[data-role=ti-link]")?.getAttribute("href") ?? null,
      bars: row.querySelectorAll(".bar").length,
      text: row.textContent.replace(/\s+/g, " ").trim(),
    })),
  );
  out.page_text = await page.locator("body").innerText();

  // the DAG run's row: its page, a download, then its task instance in Airflow's UI
  await page.locator(`tr[data-run-key="${process.env.RUN_KEY}"] td a`).first().click();
  await page.waitForSelector("table[data-role=files]");
  out.run_page = {
    url: page.url(),
    files: await page.locator("table[data-role=files] a").allTextContents(),
    state: (await page.locator("p[data-role=state]").textContent()).trim(),
  };
  const href = await page.locator("table[data-role=files] a", { hasText: /^state$/ }).getAttribute("href");
  const download = await page.request.get(new URL(href, page.url()).toString());
  out.download = { status: download.status(), body: await download.text() };
  await page.screenshot({ path: `${shots}/runs-view-run.png`, fullPage: true });
  const ti = await page.locator("[data-role=ti-link]").getAttribute("href");
  await page.goto(new URL(ti, page.url()).toString());
  await page.waitForLoadState("networkidle");
  out.task_instance = { url: page.url(), title: await page.title() };

  // Browse > Handoff runs: the view inside Airflow's own UI
  await page.goto(`${base}/plugin/handoff-runs`);
  const frame = page.frameLocator("iframe");
  await frame.locator("tr[data-run-key]").first().waitFor({ timeout: 60000 });
  out.embedded_rows = await frame.locator("tr[data-run-key]").count();
  // the entry under Browse in Airflow's navigation
  await page.getByRole("button", { name: "Browse" }).click();
  const entry = page.getByText("Handoff runs", { exact: true });
  await entry.first().waitFor({ timeout: 30000 });
  out.nav_has_entry = (await entry.count()) > 0;
  await page.keyboard.press("Escape");
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${shots}/runs-view.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

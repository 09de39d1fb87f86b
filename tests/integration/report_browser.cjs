// Opens a single-file Allure report in headless Chromium (Debian's /usr/bin/chromium) the way a
// person would: the overview, the suites tree, one scenario and its timeline attachment.
// Prints what it saw as JSON on stdout and saves screenshots.
//
//   node report_browser.cjs REPORT.html SCENARIO_NAME FAILING_TEST_NAME SCREENSHOT_DIR
//
// playwright-core (no browser download of its own) comes from harness/report/npm via NODE_PATH.
"use strict";
const { chromium } = require("playwright-core");

const [reportPath, scenario, failing, shots] = process.argv.slice(2);
const url = "file://" + reportPath;

// Allure's trees (suites: package > module > test; categories: category > message > test) start
// collapsed: open each newly shown group until `text` is visible.
async function expandUntil(page, text) {
  await page.locator(".node__title").first().waitFor();
  let opened = 0;
  for (let round = 0; round < 5 && !(await page.getByText(text).first().isVisible()); round++) {
    const groups = page.locator(".node__title:has(.node__arrow)");
    const n = await groups.count();
    for (let i = opened; i < n; i++) await groups.nth(i).click();
    opened = n;
  }
  await page.getByText(text).first().waitFor();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Playwright adds --headless and a fresh temporary profile; these keep Chromium off the network.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 60000,
  });
  const out = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(30000);
    // Nothing but the file itself may load: any other request is a report that reaches out.
    out.external = [];
    page.on("request", (r) => {
      if (!r.url().startsWith("file://") && !r.url().startsWith("data:")) out.external.push(r.url());
    });

    await page.goto(url);
    await page.getByText("Environment").first().waitFor();
    await page.getByText("Kubernetes").first().waitFor();
    out.overview = await page.innerText("body");
    await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

    await page.goto(url + "#suites");
    await expandUntil(page, scenario);
    out.suites = await page.innerText("body");
    await page.getByText(scenario).first().click();
    await page.getByText("timeline", { exact: true }).first().waitFor();
    await page.getByText("timeline", { exact: true }).first().click();
    const img = page.locator("img.attachment-preview__media").first();
    await img.waitFor();
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
    out.image = await img.evaluate((el) => ({ width: el.naturalWidth, height: el.naturalHeight }));
    out.scenario = await page.innerText("body");
    await page.screenshot({ path: `${shots}/scenario.png`, fullPage: true });

    await page.goto(url + "#categories");
    await expandUntil(page, failing);
    out.categories = await page.innerText("body");
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});

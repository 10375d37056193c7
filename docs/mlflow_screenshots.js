// Screenshots of the MLflow UI for the README (docs/mlflow_*.png), taken with headless Chromium:
//   python -m ecosweep mlflow-backfill experiments/int8_paradox/h100 --experiment int8_paradox-h100 --uri sqlite:////tmp/mlshot/mlflow.db
//   mlflow ui --backend-store-uri sqlite:////tmp/mlshot/mlflow.db --host 127.0.0.1 --port 5055 &
//   npm install playwright-core@1   (Debian's chromium at /usr/bin/chromium)
//   node docs/mlflow_screenshots.js RUNS_URL PARENT_ARTIFACTS_URL docs/mlflow_runs_table.png docs/mlflow_study_report.png
const { chromium } = require('playwright-core');
(async () => {
  const [url, parentUrl, outRuns, outParent] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox','--disable-gpu','--disable-background-networking','--disable-component-update','--disable-sync','--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1700, height: 620 } });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForTimeout(8000);
  await page.getByRole('button', { name: 'Close' }).click();
  const training = page.getByText('Model training', { exact: true });
  if (await training.count()) { await training.first().click(); await page.waitForTimeout(3000); }
  await page.locator('button[data-component-id*="runnamecellrenderer"]').first().click();
  await page.getByRole('button', { name: 'Columns', exact: true }).click();
  await page.waitForTimeout(800);
  for (const name of ['Dataset', 'Source', 'Models']) {
    await page.getByRole('dialog').getByText(name, { exact: true }).click();
  }
  for (const name of ['quantization', 'hardware', 'energy_j_per_1k_tok', 'energy_j_per_1k_tok.cv_pct', 'tok_s', 'power_w_mean', 'cells_ok']) {
    const search = page.getByPlaceholder('Search columns');
    await search.fill(name);
    await page.waitForTimeout(500);
    const items = page.getByRole('dialog').locator('label, [role="checkbox"], span').filter({ hasText: new RegExp('^' + name.replace('.', '\\.') + '$') });
    await items.first().click();
  }
  await page.keyboard.press('Escape');
  await page.waitForTimeout(1500);
  await page.screenshot({ path: outRuns });
  const p2 = await browser.newPage({ viewport: { width: 1500, height: 800 } });
  await p2.goto(parentUrl, { waitUntil: 'load' });
  await p2.waitForTimeout(8000);
  const close = p2.getByRole('button', { name: 'Close' });
  if (await close.count()) await close.first().click();
  const folder = p2.getByText('report', { exact: true }).first();
  if (await folder.count()) { await folder.click(); await p2.waitForTimeout(1500); }
  const report = p2.getByText('report.md').first();
  if (await report.count()) { await report.click(); await p2.waitForTimeout(2500); }
  await p2.screenshot({ path: outParent });
  await browser.close();
})();

// Debian's chromium through playwright-core (no downloaded browser), with
// the flags every browser test here uses.
import {chromium} from "playwright-core"

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    timeout: 30000,
  })
}

"""Take the README's leaderboard screenshot (docs/assets/leaderboard.png) of a built site.

    stepwise leaderboard build --submissions submissions/ --out site/ --recheck none
    python scripts/screenshot_leaderboard.py site/ docs/assets/leaderboard.png

Headless Debian chromium through selenium (the dev extra), with the flags that keep it off the
network; the page is opened from file://, as the built site works without a server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--allow-file-access-from-files")


def screenshot(site: Path, out: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((site / "index.html").resolve().as_uri())
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise SystemExit(f"chromium could not write {out}")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", type=Path, help="a folder that `stepwise leaderboard build` wrote")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    if not (args.site / "index.html").is_file():
        raise SystemExit(f"{args.site}: no index.html (build the site first)")
    screenshot(args.site, args.out, args.width, args.height)
    print(args.out)


if __name__ == "__main__":
    main()

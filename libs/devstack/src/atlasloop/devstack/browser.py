"""Headless Chromium for the web page's browser test and its benchmark: Debian's ``chromium`` and
``chromium-driver``, installed when missing (``system_packages``), driven through WebDriver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlasloop.devstack.system_packages import CHROMIUM, ensure

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

CHROMIUM_BINARY = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def headless_chromium(why: str, width: int = 1400, height: int = 1000) -> Chrome:
    """A headless Chromium window of ``width`` x ``height``; ``why`` says who needs the packages
    when they must be installed and cannot be."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    ensure(CHROMIUM, why)
    options = Options()
    options.binary_location = CHROMIUM_BINARY
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

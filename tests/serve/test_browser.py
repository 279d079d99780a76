"""The web page in Debian's chromium, headless (Selenium + chromium-driver; nothing downloaded):
upload a sample photo through the file input, read the fruit's name from the page."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import SAMPLE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER),
                       reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"),
]


def headless_chromium(width: int = 420, height: int = 900):
    """A Selenium driver of the system's chromium (a phone-sized window)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def ask_the_page(driver, url: str, photo) -> str:
    """Open the page, upload `photo` through its file input; the answer's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    WebDriverWait(driver, 60).until(ready.presence_of_element_located((By.CSS_SELECTOR, "#answer.sure, #answer.unsure")))
    return driver.find_element(By.ID, "answer").text


@pytest.mark.parametrize("fruit", ["Banana", "Pineapple"])
def test_page_names_the_fruit(service, fruit):
    from selenium.webdriver.common.by import By

    photo = sorted((SAMPLE / "Test" / fruit).iterdir())[0]
    driver = headless_chromium()
    try:
        answer = ask_the_page(driver, service.url, photo)
        bars = driver.find_elements(By.CSS_SELECTOR, "#top .bar")
        preview = driver.find_element(By.ID, "preview")
        assert answer == fruit
        assert len(bars) == 3 and bars[0].text.startswith(fruit)
        assert preview.is_displayed() and preview.get_attribute("src").startswith("blob:")
    finally:
        driver.quit()

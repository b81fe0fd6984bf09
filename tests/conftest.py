def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes tens of seconds (builds, installs); deselect with -m "not slow"')

"""The docs site in a real browser: Debian's headless Chromium, driven by Playwright, loads every page.

The site is the one `make docs` just built (`DOCS_SITE=site`, as `make test` runs it) or, run alone, one this test
builds strictly into a temporary folder. It is served on 127.0.0.1 only. Screenshots of the home page and of the
Learner page land in `build/screenshots/` for people to look at.
"""
import functools, importlib.util, json, os, re, shutil, subprocess, sys, tempfile, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT/'build'/'screenshots'
MARKER = 'docs-test: hidden-cell marker'  # a comment in a `#| hide` cell of nbs/index.ipynb: it must never show
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']

def _hooks():
    spec = importlib.util.spec_from_file_location('docs_hooks', ROOT/'docs'/'hooks.py')
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

hooks = _hooks()
NBS = hooks.notebooks(Path(os.environ.get('FASTFOUND_NBS') or ROOT/'nbs'))  # as the docs build finds them

def find_chromium() -> str:
    "Debian's chromium: found, or installed with apt-get when we are root. No chromium is a failure, not a skip."
    for c in ('/usr/bin/chromium', shutil.which('chromium') or ''):
        if c and os.access(c, os.X_OK): return c
    if os.geteuid() == 0 and shutil.which('apt-get'):
        env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
        subprocess.run(['apt-get', 'update', '-qq'], env=env, check=False)
        subprocess.run(['apt-get', 'install', '-y', '-qq', 'chromium'], env=env, check=False)
        if os.access('/usr/bin/chromium', os.X_OK): return '/usr/bin/chromium'
    pytest.fail('Debian\'s chromium is not installed and could not be installed (`apt-get install chromium`): '
                'the docs browser test needs it', pytrace=False)

@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    "The built site: `$DOCS_SITE` if `make docs` just built it, else a strict build of our own."
    if d := os.environ.get('DOCS_SITE'):
        d = Path(d) if Path(d).is_absolute() else ROOT/d
        assert (d/'index.html').exists(), f'DOCS_SITE={d} has no index.html: run `make docs` first'
        return d
    d = tmp_path_factory.mktemp('site')  # (no -q: mkdocs -q hides warnings from --strict, and passes)
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '-d', str(d)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    assert r.returncode == 0, f'mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}'
    return d

@pytest.fixture(scope='module')
def server(site):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown(); httpd.server_close()

@pytest.fixture(scope='module')
def browser():
    exe = find_chromium()
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail('the playwright package is missing: `make .venv/.installed-dev`', pytrace=False)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True, args=FLAGS,
                                                   viewport={'width': 1280, 'height': 900})
        ctx.route('**/*', offline)
        yield ctx
        ctx.close()

# The site needs no other host. The one outside request it makes, the theme's fetch of the repository's stars
# and latest release from GitHub's API, is answered here as GitHub would; any other is a failure.
GITHUB_API = hooks.settings()['git_url'].rstrip('/').replace('https://github.com/', 'https://api.github.com/repos/')
OUTSIDE = []

def offline(route):
    url = route.request.url
    if url.startswith('http://127.0.0.1:'): return route.continue_()
    if url == GITHUB_API: return route.fulfill(json={'stargazers_count': 0, 'forks_count': 0})
    if url == GITHUB_API + '/releases/latest': return route.fulfill(json={'tag_name': 'v' + hooks.settings()['version']})
    OUTSIDE.append(url); route.abort()

def page_urls(site:Path, base:str) -> list[str]:
    "Every page of the site (the 404 page is served at any depth and uses absolute links: left out)."
    rels = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob('index.html'))
    return [base if r == '.' else f'{base}{r}/' for r in rels]

_INFO = """() => ({
  title: document.title,
  h1: [...(document.querySelector('article h1')?.childNodes ?? [])]
        .filter(n => !(n.classList && n.classList.contains('headerlink'))).map(n => n.textContent).join(''),
  text: document.body.innerText,
  pre: [...document.querySelectorAll('pre')].map(e => e.innerText),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  nav: [...document.querySelectorAll('.md-nav--primary a.md-nav__link[href]')].map(a => a.href),
  imgs: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                                         w: i.naturalWidth, h: i.naturalHeight})),
})"""

@pytest.fixture(scope='module')
def pages(site, server, browser) -> dict:
    "Load every page once; keep what the assertions need, console errors included."
    res, errors = {}, []
    pg = browser.new_page()
    pg.on('console', lambda m: errors.append(f'{pg.url}: console.{m.type}: {m.text}') if m.type == 'error' else None)
    pg.on('pageerror', lambda e: errors.append(f'{pg.url}: uncaught: {e}'))
    pg.on('requestfailed', lambda r: errors.append(f'{pg.url}: request failed: {r.url} {r.failure}'))
    for url in page_urls(site, server):
        n = len(errors)
        resp = pg.goto(url, wait_until='load')
        assert resp and resp.ok, f'{url}: HTTP {resp and resp.status}'
        pg.wait_for_load_state('networkidle')
        info = pg.evaluate(_INFO)
        info['html'], info['errors'] = pg.content(), errors[n:]
        res[url] = info
    pg.close()
    return res

def _url(base, fn):
    "The URL of notebook `fn`'s page."
    uri = hooks.page_uri(fn)
    return base if uri == 'index.md' else base + uri[:-3] + '/'

# --- the assertions ------------------------------------------------------------------------------------------

def test_every_notebook_is_a_page_titled_by_its_h1(pages, server):
    from execnb.nbio import read_nb
    assert NBS, 'nbs/ has no notebooks'
    for fn in NBS:
        url = _url(server, fn)
        assert url in pages, f'{fn.name} has no page at {url}'
        title = hooks.title_of(read_nb(fn), fn.stem)
        assert pages[url]['h1'].strip() == title, f'{fn.name}: page title {pages[url]["h1"]!r}, H1 {title!r}'
    chapters = [_url(server, fn) for fn in NBS if fn.stem != 'index']
    nav = [u for u in pages[server]['nav'] if u in chapters]
    assert list(dict.fromkeys(nav)) == chapters, 'the nav does not follow the notebooks\' order'

def test_no_directive_text(pages):
    for url, p in pages.items():
        for block in p['pre']:
            assert '#|' not in block, f'{url}: a `#|` directive shows in a code block:\n{block[:300]}'
        lines = [l for l in p['text'].splitlines() if l.lstrip().startswith('#|')]
        assert not lines, f'{url}: `#|` text on the page: {lines[:3]}'

def test_no_hidden_cell_content(pages, site):
    hidden = [fn.name for fn in NBS if any(c['cell_type'] == 'code' and MARKER in ''.join(c['source'])
              and re.search(r'^\s*#\|\s*hide\s*$', ''.join(c['source']), re.M)
              for c in json.loads(fn.read_text(encoding='utf-8'))['cells'])]
    assert hidden, f'no notebook has a `#| hide` cell holding {MARKER!r}: the check below would prove nothing'
    for url, p in pages.items(): assert MARKER not in p['html'], f'{url} shows hidden cell content from {hidden}'
    for f in site.rglob('*'):
        if f.suffix in ('.html', '.json', '.md', '.txt', '.xml'):
            assert MARKER not in f.read_text(errors='replace'), f'{f.relative_to(site)} holds hidden cell content'

def test_internal_links_resolve(pages, server, site):
    bad = []
    for url, p in pages.items():
        for href in p['links']:
            if not href.startswith(server): continue
            path, frag = urlsplit(href).path, urlsplit(href).fragment
            target = server + path.lstrip('/')
            if target in pages:
                if frag and frag not in pages[target]['ids']: bad.append(f'{url} -> {href} (no #{frag} there)')
            elif not (site/path.lstrip('/')).is_file(): bad.append(f'{url} -> {href} (no such page or file)')
    assert not bad, 'broken internal links:\n' + '\n'.join(bad)

def test_images_load(pages):
    imgs = [(url, i) for url, p in pages.items() for i in p['imgs']]
    broken = [f'{url}: {i["src"]}' for url, i in imgs if not i['ok'] or not i['w'] or not i['h']]
    assert not broken, 'images that did not load:\n' + '\n'.join(broken)
    figs = [fn.name for fn in NBS if '"image/png"' in fn.read_text(encoding='utf-8')]
    shown = [i['src'] for _, i in imgs if re.search(r'_files/[^/]+\.png$', i['src'])]
    if figs: assert shown, f'{figs} have saved figures, but no page shows one'
    assert not [s for s in shown if s.startswith('data:')], 'a figure is a data URI, not a file'

def test_every_public_name_has_a_reference_entry(pages, server):
    "Each module's reference page has an entry (an anchor) for every name in its `__all__` and their methods."
    mods = hooks.modules(ROOT/'fastfound')
    for m in mods:
        url = server + m.uri[:-3] + '/'
        assert url in pages, f'{m.name} has no reference page at {url}'
        missing = [n for n in m.names if f'{m.name}.{n}' not in pages[url]['ids']]
        assert not missing, f'{url} does not document {missing}'
    listed = [u for u in pages[server + 'api/']['links'] if re.search(r'/api/[^/]+/$', u)]
    assert {server + m.uri[:-3] + '/' for m in mods} <= set(listed), 'the API overview does not list every module'

def known_name() -> tuple[str, str]:
    "A function the package really has (matmul_einsum if it exists), and its module; else the home page's title."
    mods = hooks.modules(ROOT/'fastfound')
    names = [(n, m.name) for m in mods for n in m.names if '.' not in n]
    for n, m in names:
        if n == 'matmul_einsum': return n, m
    if names: return names[0]
    return 'fastfound', ''

def test_search_finds_a_function(browser, server, pages):
    name, mod = known_name()
    pg = browser.new_page()
    pg.goto(server, wait_until='load')
    box = pg.locator('input.md-search__input')
    box.click(); box.press_sequentially(name, delay=30)  # as a person types
    pg.wait_for_selector('.md-search-result__item', timeout=15_000)
    hits = pg.eval_on_selector_all('.md-search-result__item a', 'as => as.map(a => [a.href, a.innerText])')
    pg.close()
    assert any(name in text for _, text in hits), f'searching {name!r} found {hits[:5]}'
    if mod: assert any('/api/' in href for href, _ in hits), f'searching {name!r} did not find its reference page'

def test_no_console_errors(pages):
    errors = [e for p in pages.values() for e in p['errors'] if not any(u in e for u in OUTSIDE)]
    assert not OUTSIDE, 'the site requested outside hosts:\n' + '\n'.join(sorted(set(OUTSIDE)))
    assert not errors, 'JavaScript errors:\n' + '\n'.join(errors)

def test_screenshots(browser, server, pages):
    "The home page and the Learner page, as PNG files for people to look at."
    SHOTS.mkdir(parents=True, exist_ok=True)
    learner = [fn for fn in NBS if re.search(r'learner', fn.stem)]
    shots = {'home': server} | ({'learner': _url(server, learner[0])} if learner else {})
    pg = browser.new_page()
    for name, url in shots.items():
        pg.goto(url, wait_until='networkidle')
        out = SHOTS/f'{name}.png'
        pg.screenshot(path=str(out))
        assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 10_000, f'{out} is no screenshot'
    pg.close()

"""The docs site in a real browser: Debian's headless Chromium, driven by Playwright, loads every page.

The site is the one `make docs` just built (`DOCS_SITE=site`, as `make test` runs it) or, run alone, one this test
builds strictly into a temporary folder. It is served on 127.0.0.1 only. Screenshots of the home page, the Learner
page, the backprop maths, the Learner reference entry and a phone-width page land in `build/screenshots/` for
people to look at.
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
  bare: (() => {  // the article's text outside code and typeset maths: where raw TeX must not be
    const a = document.querySelector('article');
    if (!a) return '';
    const c = a.cloneNode(true);
    c.querySelectorAll('pre, code, .katex, script, style').forEach(e => e.remove());
    return c.textContent;
  })(),
  outputs: [...document.querySelectorAll('.nb-output')].map(e => e.innerText),
  downloads: [...document.querySelectorAll('article a[download]')].map(a => a.href),
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
    nbs = [_url(server, fn) for fn in NBS if fn.stem != 'index']
    nav = list(dict.fromkeys(u for u in pages[server]['nav'] if u in nbs))
    assert set(nav) == set(nbs), f'notebook pages missing from the sidebar: {sorted(set(nbs) - set(nav))}'
    for k in ('chapter', 'machinery'):  # within a group, the notebooks' order
        group = [_url(server, fn) for fn in NBS if hooks.kind(fn) == k]
        assert [u for u in nav if u in group] == group, f'the sidebar\'s {k} pages are not in the notebooks\' order'

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

# --- maths, layout, figures, the reference, the reader's path ------------------------------------------------

_LEFT_RAW = """() => {
  const a = document.querySelector('article').cloneNode(true);
  a.querySelectorAll('pre, code, .katex, script, style').forEach(e => e.remove());
  return {katex: document.querySelectorAll('article .katex').length,
          errors: [...document.querySelectorAll('article .katex-error')].map(e => e.textContent),
          text: a.textContent};
}"""

def _page(browser, width:int, height:int=900):
    "A new tab at a given window size (the persistent context takes the size per page, not at creation)."
    pg = browser.new_page()
    pg.set_viewport_size({'width': width, 'height': height})
    return pg

def _chapter(server, stem_re):
    fns = [fn for fn in NBS if re.search(stem_re, fn.stem)]
    assert fns, f'no notebook matches {stem_re!r}'
    return _url(server, fns[0])

@pytest.mark.parametrize('stem', ['backprop', 'init', 'training'])
def test_maths_is_rendered(browser, server, pages, stem):
    "KaTeX (served by the site itself) typesets every expression; no raw `\\(`, `\\[` or `$$` is left outside code."
    pg = browser.new_page()
    pg.goto(_chapter(server, stem), wait_until='networkidle')
    r = pg.evaluate(_LEFT_RAW)
    pg.close()
    assert r['katex'] > 0, f'{stem}: no KaTeX element on the page: the maths did not render'
    assert not r['errors'], f'{stem}: KaTeX could not parse {r["errors"][:3]}'
    raw = re.findall(r'.{0,30}(?:\\\(|\\\[|\$\$).{0,30}', r['text'])
    assert not raw, f'{stem}: raw maths delimiters outside code: {raw[:3]}'

_OVERFLOW = """() => [...document.querySelectorAll('article pre')].filter(p => !p.closest('.nb-cols')).flatMap(p => {
  const c = p.querySelector('code') || p;
  const over = Math.max(p.scrollWidth - p.clientWidth, c.scrollWidth - c.clientWidth);
  if (over <= 1) return [];
  const longest = Math.max(...p.innerText.split('\\n').map(l => l.length));
  return [{over, longest, first: p.innerText.split('\\n').find(l => l.length === longest)}];
})"""

_CAPACITY = """() => {
  const c = document.querySelector('article pre > code');
  if (!c) return null;
  const s = document.createElement('span'); s.textContent = 'm'.repeat(100); c.appendChild(s);
  const cs = getComputedStyle(c);
  const room = c.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const w = s.getBoundingClientRect().width; s.remove();
  return {w, room};
}"""

def _unwrapped() -> set[Path]:
    "The notebooks that still have code lines over 100 characters (not yet wrapped): their pages are checked later."
    def code(fn): return [c for c in json.loads(fn.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    return {fn for fn in NBS if any(len(l.rstrip('\n')) > 100 for c in code(fn) for l in c['source'])}

def test_code_fits_at_1400px(browser, server, pages):
    "At 1400 px, a 100-character line fits a code block, and no code block on a page whose code is wrapped scrolls."
    pg = _page(browser, 1400)
    over, cap = {}, None
    todo = {_url(server, fn) for fn in _unwrapped()}  # every other page is checked: chapters, guides, the reference
    for url in pages:
        if url in todo: continue
        pg.goto(url, wait_until='load')
        if cap is None and (c := pg.evaluate(_CAPACITY)): cap = c
        if o := pg.evaluate(_OVERFLOW): over[url] = o
    pg.close()
    assert cap and cap['w'] <= cap['room'], f'100 monospace characters take {cap and cap["w"]} px of {cap and cap["room"]}'
    report = [f'{u}: {len(o)} block(s), longest line {max(b["longest"] for b in o)} chars: {o[0]["first"][:60]!r}'
              for u, o in over.items()]
    assert not over, 'code that scrolls sideways at 1400 px (lines over 100 characters?):\n' + '\n'.join(report)

def test_outputs_wrap(browser, server, pages):
    "Every text a cell printed, on every page that has one, wraps (`pre-wrap`) instead of scrolling sideways."
    pg = _page(browser, 1400)
    seen, bad = 0, []
    for url in [u for u, p in pages.items() if 'class="nb-output"' in p['html']]:
        pg.goto(url, wait_until='load')
        ws = pg.evaluate("[...document.querySelectorAll('.nb-output pre > code')]"
                         ".filter(c => !c.closest('.nb-cols')).map(c => getComputedStyle(c).whiteSpace)")
        seen += len(ws)
        bad += [f'{url}: {w}' for w in sorted(set(ws) - {'pre-wrap'})]
    pg.close()
    assert seen, 'no page shows a printed output: the check proves nothing'
    assert not bad, 'outputs that do not wrap:\n' + '\n'.join(bad)

_FIGS = """() => [...document.querySelectorAll('article img')].filter(i => /_files\\//.test(i.src)).map(i => ({
  src: i.src, alt: i.alt, w: i.getBoundingClientRect().width, nat: i.naturalWidth,
  top: i.getBoundingClientRect().top + window.scrollY, panel: !!i.closest('.nb-panels')}))"""

def test_figures_on_a_phone(browser, server, pages):
    "At 390 px no figure is scaled below half its width, and a multi-panel figure's panels stack."
    pg = _page(browser, 390, 844)
    small, stacked, seen = [], False, 0
    for fn in NBS:
        url = _url(server, fn)
        if '"image/png"' not in fn.read_text(encoding='utf-8'): continue
        pg.goto(url, wait_until='load')
        figs = pg.evaluate(_FIGS)
        seen += len(figs)
        small += [f'{url}: {f["src"].rsplit("/", 1)[-1]} at {f["w"]:.0f} of {f["nat"]} px' for f in figs
                  if f['w'] < f['nat'] / 2]
        tops = [f['top'] for f in figs if f['panel']]
        stacked |= len(set(round(t) for t in tops)) > 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.goto(_chapter(server, 'hooks'), wait_until='load')
    pg.locator('.nb-panels').first.scroll_into_view_if_needed()
    pg.screenshot(path=str(SHOTS/'phone.png'))
    pg.close()
    assert seen, 'no figure found on the chapters that save figures'
    assert not small, 'figures scaled below half their width at 390 px:\n' + '\n'.join(small)
    assert stacked, 'no multi-panel figure stacks its panels at 390 px'

def test_figures_say_what_they_show_and_open_full_size(browser, server, pages):
    alts = [(u, i['src']) for u, p in pages.items() for i in p['imgs'] if '_files/' in i['src']]
    assert alts
    pg = browser.new_page()
    bad = []
    for url in {u for u, _ in alts}:
        pg.goto(url, wait_until='load')
        bad += [f'{url}: {a!r}' for a in pg.evaluate("[...document.querySelectorAll('article img')].map(i => i.alt)")
                if not a or re.fullmatch(r'(output \d+ of cell \d+|A (figure|plot))( \(panel \d+ of \d+\))?', a)]
    assert not bad, 'figures whose alt text does not say what they show:\n' + '\n'.join(bad[:5])
    pg.goto(_chapter(server, 'hooks'), wait_until='networkidle')
    link = pg.locator('article a.glightbox').first
    href = link.get_attribute('href')
    link.click()
    pg.wait_for_selector('.glightbox-container .gslide-image img', timeout=10_000)
    src = pg.eval_on_selector('.glightbox-container .gslide-image img', 'i => i.getAttribute("src")')
    pg.close()
    assert src.rsplit('/', 1)[-1] == href.rsplit('/', 1)[-1], f'the lightbox shows {src}, not the figure {href}'

def test_reference_pages_show_their_own_names(pages, server):
    "A module's page documents its own `__all__` only: nothing re-exported by `from .x import *`."
    for m in hooks.modules(ROOT/'fastfound'):
        ids = [i for i in pages[server + m.uri[:-3] + '/']['ids'] if i.startswith(m.name + '.')]
        own = {n.split('.')[0] for n in m.names}
        stray = sorted({i[len(m.name) + 1:].split('.')[0] for i in ids} - own)
        assert not stray, f'{m.name}: its page documents names it does not define: {stray}'

def test_learner_entry(browser, server, pages):
    "Learner's constructor parameters are a list with their docments; its methods, wherever defined, are under it."
    mods = hooks.modules(ROOT/'fastfound')
    owner = next(m for m in mods if 'Learner' in m.names)
    url = server + owner.uri[:-3] + '/'
    ids = pages[url]['ids']
    methods = [n for m in mods for n in m.adds if n.startswith('Learner.')]
    assert methods, 'no module patches a method onto Learner: the check below would prove nothing'
    missing = [n for n in methods if f'{owner.name}.{n}' not in ids]
    assert not missing, f'Learner methods from other modules are not under Learner: {missing}'
    pg = _page(browser, 1400, 1000)
    pg.goto(url, wait_until='networkidle')
    entry = pg.locator(f'[id="{owner.name}.Learner"]').locator('xpath=..')
    params = entry.locator('.doc-section-parameters, .doc-contents > ul, .doc-contents table').first.inner_text()
    body = entry.inner_text()
    pg.locator(f'[id="{owner.name}.Learner"]').scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS/'learner-api.png'))
    pg.close()
    assert 'model' in params and 'dls' in params, f'Learner has no parameter list: {params[:200]!r}'
    assert 'Args:' not in body, 'Learner\'s docments show as a run-on "Args:" paragraph'
    ev = next(m for m in mods if 'EVENTS' in m.names)  # (fastfound.events since the core split)
    events = pages[server + ev.uri[:-3] + '/']['text']
    assert "'before_fit'" in events or '"before_fit"' in events, f'{ev.name}.EVENTS does not show its value'
    assert not any('<strong>init</strong>' in p['html'] for p in pages.values()), '`__init__` renders as bold "init"'

def test_prose_links_methods_and_chapters(pages, server):
    "`fit_one_cycle` in prose links to `Learner.fit_one_cycle`; links to chapters read as titles, not file names."
    hrefs = [h for p in pages.values() for h in p['links']]
    assert any(h.endswith('#fastfound.learner.Learner.fit_one_cycle') or h.endswith('.Learner.fit_one_cycle')
               for h in hrefs), 'no page links `fit_one_cycle` to its entry under Learner'
    bad = []
    for url, p in pages.items():
        texts = re.findall(r'<a [^>]*href="[^"]*"[^>]*>(.*?)</a>', p['html'])
        bad += [f'{url}: {t}' for t in texts if re.fullmatch(r'(<code>)?\d+[a-z]?_\w+(\.ipynb)?(</code>)?', t)]
    assert not bad, 'links to chapters named by their file:\n' + '\n'.join(bad[:5])

def test_project_pages(pages, server):
    version = hooks.settings()['version']
    assert f'v{version}' in pages[server]['text'], f'the header does not show version {version}'
    assert server + 'changelog/' in pages and version in pages[server + 'changelog/']['text']
    guide = pages.get(server + 'study_guide/')
    assert guide, 'no study guide page'
    items = re.findall(r'(?s)<li>(.*?)</li>', guide['html'].split('<article', 1)[-1])
    questions = [i for i in items if '<strong>' in i]
    assert len(questions) == 40, f'the study guide has {len(questions)} questions; the questionnaire has 40'
    unlinked = [re.sub('<[^>]+>', '', q)[:60] for q in questions if not re.search(r'href="[^"]*#', q)]
    assert not unlinked, f'questions with no link to a section: {unlinked}'

def test_callback_index_matches_the_code(pages, server):
    "Every exported Callback subclass is in the index with its order; every event is in the event table."
    import importlib
    mods = hooks.modules(ROOT/'fastfound')
    Callback, events, _, _ = hooks.callback_api('fastfound', mods, ROOT)
    for m in mods: importlib.import_module(m.name)
    exported = {n: m.name for m in mods for n in m.names if '.' not in n}
    def subs(c): return [c] + [x for s in c.__subclasses__() for x in subs(s)]
    cbs = {c for c in subs(Callback) if c is not Callback and exported.get(c.__name__) == c.__module__}
    assert cbs, 'no exported Callback subclass found'
    page = pages[server + hooks.CALLBACKS_URI[:-3] + '/']
    for c in cbs:
        row = next((l for l in page['text'].splitlines() if l.split('\t')[0].strip() == c.__name__), None)
        assert row, f'{c.__name__} is not in the callback index'
        assert str(getattr(c, 'order', 0)) in row, f'{c.__name__}: order {c.order} not in {row!r}'
    for e in events: assert e in page['text'], f'event {e} is not in the event table'

def test_maths_screenshot(browser, server, pages):
    pg = _page(browser, 1400)
    pg.goto(_chapter(server, 'backprop'), wait_until='networkidle')
    pg.locator('article .katex').nth(3).scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS/'backprop-maths.png'))
    pg.close()
    assert (SHOTS/'backprop-maths.png').stat().st_size > 10_000

def test_reference_links_to_python_docs(pages, server):
    "Standard-library names in signatures link to docs.python.org, through the inventory read offline at build time."
    assert hooks.python_inventory(), "Python's inventory is not installed (`make sysdeps`: apt-get install python3-doc)"
    hrefs = {h for u, p in pages.items() if '/api/' in u for h in p['links']}
    assert any(h.startswith('https://docs.python.org/') and h.endswith('#pathlib.Path') for h in hrefs), \
        'no reference page links pathlib.Path to Python\'s docs'


# --- what a reader must never meet: raw TeX, machine paths, tables torn apart on a phone -------------------------

_re_tex = re.compile(r'\\[A-Za-z]{2,}|\\\(|\\\[|\$\$')

def test_no_raw_tex_on_any_page(pages):
    """No page shows TeX as text outside code: not a delimiter (`\\(`, `\\[`, `$$`), nor a command (`\\frac`)
    whose delimiters markdown ate (a `\\[` inside a paragraph reaches the browser as `[ \\frac...`)."""
    bad = [f'{url}: ...{p["bare"][max(0, m.start() - 40):m.end() + 40]!r}...' for url, p in pages.items()
           for m in list(_re_tex.finditer(p['bare']))[:1]]
    assert not bad, 'raw TeX in the text of these pages:\n' + '\n'.join(bad)

_re_machine = re.compile(r'/work/|/root/|/home/|/tmp/|site-packages|dist-packages|\.venv\b|/usr/lib/python')

def test_no_machine_path_in_outputs(pages):
    "No output a page shows names a path of the machine that built it (a warning's file, a temporary folder)."
    bad = [f'{url}: {m.group(0)!r} in ...{o[max(0, m.start() - 60):m.end() + 40]!r}...'
           for url, p in pages.items() for o in p['outputs'] for m in list(_re_machine.finditer(o))[:1]]
    assert not bad, 'machine paths in outputs:\n' + '\n'.join(bad)

_TABLES = """() => [...document.querySelectorAll('.nb-output pre > code')].flatMap(c => {
  const lines = c.innerText.replace(/\\n$/, '').split('\\n');
  const cols = lines.map(l => /\\S {2,}\\S/.test(l));
  if (!cols.some((x, i) => x && cols[i + 1])) return [];  // no two aligned lines in a row: not a table
  const cs = getComputedStyle(c), pre = c.parentElement;
  const lh = parseFloat(cs.lineHeight) || 1.4 * parseFloat(cs.fontSize);
  const pad = parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom);
  const wrapped = (c.clientHeight - pad) > lines.length * lh * 1.25;
  const scrolls = ['auto', 'scroll'].includes(cs.overflowX) || ['auto', 'scroll'].includes(getComputedStyle(pre).overflowX);
  return [{first: lines.find((l, i) => cols[i]), ws: cs.whiteSpace, wrapped, scrolls,
           inside: pre.getBoundingClientRect().right <= document.documentElement.clientWidth + 1}];
})"""

def test_printed_tables_on_a_phone(browser, server, pages):
    """At 390 px, a printed table (columns aligned with spaces: the per-epoch table, the init results) keeps its
    lines: it does not wrap into misaligned rows, it scrolls sideways in its own box, inside the page."""
    pg = _page(browser, 390, 844)
    seen, bad = 0, []
    for url in [u for u, p in pages.items() if 'class="nb-output"' in p['html']]:
        pg.goto(url, wait_until='load')
        for t in pg.evaluate(_TABLES):
            seen += 1
            if t['wrapped'] or not t['scrolls'] or not t['inside']:
                bad.append(f'{url}: {t["first"][:50]!r} (white-space {t["ws"]}, wrapped {t["wrapped"]}, '
                           f'scrolls {t["scrolls"]}, inside the page {t["inside"]})')
    url = _chapter(server, r'^0*6_learner|learner$')
    pg.goto(url, wait_until='load')
    if pg.locator('.nb-cols').count():
        pg.locator('.nb-cols').first.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SHOTS/'phone-table.png'))
    pg.close()
    assert seen > 5, f'only {seen} printed tables found: the check proves little'
    assert not bad, 'printed tables torn apart at 390 px:\n' + '\n'.join(bad[:10])

# --- the reader's path: the study guide, the research map, the notebooks to download, search -------------------

def test_reader_path(pages, server):
    "Home and Start here link the study guide and the Further research map; the sidebar keeps machinery apart."
    start = _url(server, next(fn for fn in NBS if hooks.kind(fn) == 'start'))
    for url in (server, start):
        for target in ('study_guide/', 'further_research/'):
            assert any(h.split('#')[0] == server + target for h in pages[url]['links']), f'{url} has no link to {target}'
    research = pages[server + 'further_research/']
    linked = {h.split('#')[0] for h in research['links']}
    for stem in ('autograd', 'linear_grads', 'conv', 'numpy'):
        fn = next(fn for fn in NBS if fn.stem.endswith(stem))
        assert _url(server, fn) in linked, f'Further research does not link {fn.name}'
    nav = pages[server]['html'].split('md-nav--primary', 1)[-1]
    i, j = (m.start() if (m := re.search(rf'>\s*{g}\s*<', nav)) else -1 for g in ('Chapters', 'Machinery'))
    assert 0 < i < j, 'the sidebar has no "Chapters" group followed by a "Machinery" group'
    for fn in NBS:
        if hooks.kind(fn) == 'machinery':
            k = nav.find(f'href="{hooks.page_uri(fn)[:-3]}/"')
            assert k > j, f'{fn.name} is not in the Machinery group'

def test_every_notebook_page_offers_its_notebook(pages, server, site):
    "Every notebook page but the home page links its notebook, which the site ships, runnable as it is."
    for fn in NBS:
        if fn.stem == 'index': continue
        url = _url(server, fn)
        links = [h for h in pages[url]['downloads'] if h.endswith('/' + fn.name)]
        assert links, f'{url} has no link to download {fn.name}'
        f = site/urlsplit(links[0]).path.lstrip('/')
        nb = json.loads(f.read_text(encoding='utf-8'))
        src = json.loads(fn.read_text(encoding='utf-8'))
        code = lambda n: [''.join(c['source']) for c in n['cells'] if c['cell_type'] == 'code']
        assert nb['cells'] and not [c for c in code(nb) if 'nbdev_export(' in c], f'{f}: not a notebook to run'
        assert [c for c in code(src) if 'nbdev_export(' not in c] == code(nb), f'{f} is not {fn.name}'

# `Learner.fit` is the one exception to "first": Material's search matches each word also as a prefix, so the
# entry `fit_one_cycle` (whose text says "fit" more often) ranks just above `fit`, on the same reference page.
@pytest.mark.parametrize('query,anchor,within', [('lr_find', '.Learner.lr_find', 1),
                                                 ('fit_one_cycle', '.Learner.fit_one_cycle', 1),
                                                 ('Learner.fit', '.Learner.fit', 2)])
def test_search_finds_the_entry_first(browser, server, query, anchor, within):
    "Searching a method's name finds its reference entry first, not a page that mentions it or a source listing."
    pg = browser.new_page()
    pg.goto(server, wait_until='load')
    box = pg.locator('input.md-search__input')
    box.click(); box.press_sequentially(query, delay=30)
    pg.wait_for_selector('.md-search-result__item', timeout=15_000)
    pg.wait_for_timeout(500)
    hits = pg.eval_on_selector_all('.md-search-result__item a', 'as => as.map(a => a.href)')
    pg.close()
    entries = [h for h in hits if '#' in h]
    assert '/api/' in hits[0], f'searching {query!r}: the first result is {hits[0]}, not a reference page'
    assert any(h.endswith(anchor) for h in entries[:within]), \
        f'searching {query!r}: the entry is not among the first {within}: {entries[:3]}'

def test_shots_for_people(browser, server, pages):
    "Screenshots of the linear-gradients page's maths and of an exercise's failing answer, for people to look at."
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg = _page(browser, 1400, 1000)
    pg.goto(_chapter(server, 'linear_grads'), wait_until='networkidle')
    pg.locator('article .katex-display').first.scroll_into_view_if_needed()
    pg.screenshot(path=str(SHOTS/'linear-grads.png'))
    pg.goto(_chapter(server, 'exercises'), wait_until='networkidle')
    failing = pg.locator('.nb-output', has_text='✗').first
    failing.scroll_into_view_if_needed()
    pg.screenshot(path=str(SHOTS/'exercise-failing.png'))
    text = failing.inner_text()
    pg.close()
    assert '✗' in text and 'expected' in text, f'the exercises page shows no failing answer with its message: {text!r}'
    for n in ('linear-grads', 'exercise-failing'): assert (SHOTS/f'{n}.png').stat().st_size > 10_000

"Package metadata comes from settings.ini, the one place nbdev and pip both read."
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

for k in 'version description repo user author author_email license min_python lib_name'.split():
    if k not in cfg: raise ValueError(f'settings.ini is missing the setting {k!r}')

readme = here/'README.md'
setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else '',
    long_description_content_type='text/markdown',
    url=cfg['git_url'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache-2.0',
    keywords=cfg.get('keywords', '').split(),
    classifiers=['Development Status :: 3 - Alpha', 'Intended Audience :: Developers',
                 'Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    python_requires='>=' + cfg['min_python'],
    install_requires=cfg.get('requirements', '').split(),
    extras_require={e: cfg.get(f'{e}_requirements', '').split() for e in ('dev', 'tensorboard')},
    entry_points={'console_scripts': cfg.get('console_scripts', '').split()},
    zip_safe=False,
)

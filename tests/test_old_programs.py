"""Programs written against earlier fastfound (tests/fixtures/old_programs): old import paths, miniai's habits. Each
runs in a fresh interpreter and must succeed; those that import from an old path see a DeprecationWarning naming the
new one."""
import os, subprocess, sys
from pathlib import Path
import pytest

HERE = Path(__file__).resolve().parent
PROGRAMS = sorted((HERE/'fixtures'/'old_programs').glob('*.py'))
NEW_HOME = {'callbacks_paths': 'fastfound.core_cbs.MetricsCB', 'checkpoint_paths': 'fastfound.files.load_file',
            'cli_models': 'fastfound.models.cnn', 'miniai_port': 'fastfound.core_cbs.DeviceCB',
            'data_paths': 'fastfound.files.file_mode'}


@pytest.mark.parametrize('prog', PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_earlier_program_runs(prog, tmp_path):
    env = os.environ | {'PYTHONPATH': os.pathsep.join([str(HERE.parent), os.environ.get('PYTHONPATH', '')])}
    r = subprocess.run([sys.executable, '-W', 'always::DeprecationWarning', str(prog)], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-1].startswith('ok')
    assert f'has moved to {NEW_HOME[prog.stem]}' in r.stderr


def test_all_programs_listed():
    assert {p.stem for p in PROGRAMS} == set(NEW_HOME)

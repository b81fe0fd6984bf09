"""Every name the layered-core change (deae86c) moved still imports from its old path, for one more release: the
same object, with a DeprecationWarning naming the new path. The list is written out here, from `git show deae86c`,
not read from the modules, so that a lost alias fails. (That change also dropped `save`, `load`, `fit`, `export`,
`get_preds`, `predict_one` and `validate` from the `__all__` of checkpoint and inference: they were `@patch`
functions, which fastcore's `patch` leaves as `None` in the module, so no program could use those paths; they are
`Learner` methods, as they were.)"""
import importlib, warnings
import pytest

F, S, L = 'fastfound.files', 'fastfound.state', 'fastfound.core_cbs'
OLD = {  # old module: {name: new home}
    'callbacks': dict.fromkeys(['to_device', 'DeviceCB', 'accuracy', 'MetricsCB', 'Recorder', 'ProgressCB',
                                'default_cbs'], L),
    'checkpoint': {**dict.fromkeys(['FORMAT', 'VERSION', 'atomic_save', 'CheckpointError', 'load_file',
                                    'read_checkpoint'], F),
                   **dict.fromkeys(['rng_states', 'set_rng_states', 'cb_states', 'load_cb_states',
                                    'load_model_state', 'load_opt_state'], S),
                   'Resume': L, 'EarlyStopping': 'fastfound.callbacks'},
    'cli': {**dict.fromkeys(['MODELS', 'mlp', 'conv', 'cnn'], 'fastfound.models'), 'atomic_write': F},
    'data': {'file_mode': F},
    'learner': dict.fromkeys(['STAGES', 'STEP_EVENTS', 'EVENTS', 'PIECES', 'CancelFitException',
                              'CancelEpochException', 'CancelTrainException', 'CancelValidateException',
                              'CancelBatchException', 'Callback'], 'fastfound.events'),
}
PATHS = [(m, n, new) for m, d in OLD.items() for n, new in d.items()]


@pytest.mark.parametrize('old,name,new', PATHS, ids=[f'{m}.{n}' for m, n, _ in PATHS])
def test_old_path(old, name, new):
    mod = importlib.import_module(f'fastfound.{old}')
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        o = getattr(mod, name)  # what `from fastfound.<old> import <name>` does
    assert o is getattr(importlib.import_module(new), name)
    if name in vars(mod): assert not ws  # still imported there for the module's own use: no warning needed
    else:
        assert [w.category for w in ws] == [DeprecationWarning]
        assert f'{new}.{name}' in str(ws[0].message)
        assert ws[0].filename == __file__  # stacklevel: the warning points at the importing line


def test_import_statement_form():
    "The `from ... import ...` statement, as a user's program writes it, goes through the same path."
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        from fastfound.callbacks import MetricsCB
        from fastfound.checkpoint import EarlyStopping, load_file
        from fastfound.cli import cnn, mlp
    from fastfound import callbacks, files, models
    assert MetricsCB is importlib.import_module(L).MetricsCB and EarlyStopping is callbacks.EarlyStopping
    assert load_file is files.load_file and (cnn, mlp) == (models.cnn, models.mlp)
    assert len(ws) == 5 and all(w.category is DeprecationWarning for w in ws)


def test_unknown_name_still_fails():
    from fastfound import callbacks
    with pytest.raises(ImportError, match='NoSuchThing'):
        from fastfound.callbacks import NoSuchThing  # noqa: F401
    assert not hasattr(callbacks, 'NoSuchThing')


def test_count():
    "The number the CHANGELOG and the report quote."
    assert len(PATHS) == 37

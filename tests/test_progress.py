"""Progress of the long steps (trainer.progress): plain lines in logs, rich bars on a terminal."""

from __future__ import annotations

import io
import re

import keras
import numpy as np
from rich.console import Console

from trainer import progress
from trainer.train import EpochProgress


def test_plain_lines_note_each_advance_with_count_and_eta_and_end_with_the_duration():
    out = io.StringIO()
    with progress.PlainLines(out).step("search", "trials", total=4) as advance:
        advance(note="best so far 0.91")
        advance()  # no note: no line
        advance(completed=4, note="best so far 0.93")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[search\] trials 1 of 4: best so far 0\.91, ETA \d+ s", lines[0]), lines
    assert re.fullmatch(r"\[search\] trials 4 of 4: best so far 0\.93, ETA 0 s", lines[1]), lines
    assert re.fullmatch(r"\[search\] done in \d+\.\d s", lines[2]), lines
    assert len(lines) == 3


def test_a_bar_on_a_terminal_ends_complete_with_its_last_note():
    screen = io.StringIO()
    bars = progress.Bars(Console(file=screen, force_terminal=True, width=120))
    with bars.step("fit weighted", "epochs", total=3) as advance:
        for epoch in range(3):
            advance(note=f"epoch {epoch + 1}")
    with bars.step("TFMA", "2 models", total=None):
        pass
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.getvalue())  # without the terminal's control codes
    assert "fit weighted" in text and "3/3" in text and "epoch 3" in text
    assert "TFMA" in text


def test_the_module_display_is_what_the_entry_point_chose():
    out = io.StringIO()
    progress.use_display(progress.PlainLines(out))
    try:
        with progress.step("data", "shards") as advance:
            advance(note="read")
    finally:
        progress.use_display(progress.PlainLines())
    assert out.getvalue().startswith("[data] shards 1: read\n[data] done in ")


def test_the_epoch_callback_notes_every_epoch_of_a_keras_fit_with_the_monitored_metric():
    notes = []
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    history = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=3, verbose=0,
                        callbacks=[EpochProgress(lambda note: notes.append(note), "val_loss")])
    assert notes == [f"epoch {i + 1}: val_loss {loss:.4f}" for i, loss in enumerate(history.history["val_loss"])]

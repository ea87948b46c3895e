"""The emulators themselves: Beam's FileSystems create, match, rename, read and delete on
``gs://`` (gcp-storage-emulator) and ``s3://`` (moto's server), as the stages use them."""

from __future__ import annotations

import pytest

beam_fs = pytest.importorskip("apache_beam.io.filesystems")


def test_beam_filesystems_round_trip(object_store):
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems = beam_fs.FileSystems
    FileSystems.set_options(PipelineOptions(object_store.beam_args))
    a, b = object_store.url("dir", "a.txt"), object_store.url("dir", "b.txt")
    with FileSystems.create(a) as f:
        f.write(b"hello object store")
    assert [m.path for m in FileSystems.match([object_store.url("dir", "*")])[0].metadata_list] \
        == [a]
    FileSystems.rename([a], [b])
    listed = FileSystems.match([object_store.url("dir", "*")])[0].metadata_list
    assert [(m.path, m.size_in_bytes) for m in listed] == [(b, 18)]
    with FileSystems.open(b) as f:
        assert f.read() == b"hello object store"
    FileSystems.delete([b])
    assert not FileSystems.exists(b)

"""The training input pipeline: a resumable, sharded, seeded sample order fed to `mindspore.dataset`.

One `GeneratorDataset` covers all remaining epochs. Its sampler yields keys `epoch * N + index`, so
each sample knows which epoch's augmentation to draw, and starting the order at any step gives
exactly the batches an uninterrupted run would have seen from there (what `--resume` relies on).
"""
import math

import numpy as np

COLUMNS = ('image', 'target', 'target_weight')


def distributed_shard():
    """(number of shards, shard id) = (group size, rank) once mindspore.communication is initialised, else (1, 0)."""
    from mindspore.communication import get_group_size, get_rank
    try:
        return get_group_size(), get_rank()
    except RuntimeError:
        return 1, 0


def steps_per_epoch(num_samples, batch_size, num_shards=1):
    """Whole batches per epoch on each shard; a shard holds ceil(N / shards) samples, the last batch is dropped."""
    return math.ceil(num_samples / num_shards) // batch_size


class TrainSampler:
    """Sample keys of the remaining training steps: per-epoch seeded shuffle, this shard's share, whole batches.

    The epoch order is `default_rng((seed, epoch)).permutation(N)`, padded by wrapping to a multiple of
    the shard count and dealt round-robin (as PyTorch's DistributedSampler), so shards never overlap.
    """

    def __init__(self, num_samples, batch_size, epochs, seed=0, start_step=0, num_shards=1, shard_id=0,
                 shuffle=True):
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.num_shards = int(num_shards)
        self.shard_id = int(shard_id)
        self.shuffle = shuffle
        self.steps_per_epoch = steps_per_epoch(self.num_samples, self.batch_size, self.num_shards)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{self.num_samples} samples over {self.num_shards} shard(s) do not fill one batch "
                             f"of {self.batch_size}: lower the batch size")
        self.total_steps = self.steps_per_epoch * self.epochs
        self.start_step = int(start_step)

    def epoch_indices(self, epoch):
        """Sample indices this shard trains on in `epoch`, in order."""
        n = self.num_samples
        order = np.random.default_rng((self.seed, epoch)).permutation(n) if self.shuffle else np.arange(n)
        order = np.resize(order, math.ceil(n / self.num_shards) * self.num_shards)
        return order[self.shard_id::self.num_shards][:self.steps_per_epoch * self.batch_size]

    def __iter__(self):
        first_epoch = self.start_step // self.steps_per_epoch
        for epoch in range(first_epoch, self.epochs):
            skip = max(0, self.start_step - epoch * self.steps_per_epoch) * self.batch_size
            for index in self.epoch_indices(epoch)[skip:]:
                yield int(epoch * self.num_samples + index)

    def __len__(self):
        return max(0, self.total_steps - self.start_step) * self.batch_size


class _EpochSamples:
    """Random-access source for GeneratorDataset: key epoch * N + index -> dataset.sample(index, epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, key):
        epoch, index = divmod(int(key), len(self.dataset))
        return self.dataset.sample(index, epoch)

    def __len__(self):
        return len(self.dataset)


def build_train_dataset(dataset, batch_size, epochs, seed=0, start_step=0, num_parallel_workers=1,
                        num_shards=None, shard_id=None, shuffle=True):
    """(batched GeneratorDataset of (image, target, target_weight), sampler) for training steps start_step...

    num_shards / shard_id default to the distributed group size and rank. Workers are threads (OpenCV
    and numpy release the GIL), so the dataset's counters of skipped images stay visible to the trainer.
    """
    import mindspore.dataset as mds
    if num_shards is None or shard_id is None:
        num_shards, shard_id = distributed_shard()
    sampler = TrainSampler(len(dataset), batch_size, epochs, seed, start_step, num_shards, shard_id, shuffle)
    ds = mds.GeneratorDataset(_EpochSamples(dataset), column_names=list(COLUMNS), sampler=sampler,
                              num_parallel_workers=num_parallel_workers, python_multiprocessing=False)
    return ds.batch(batch_size, drop_remainder=True), sampler

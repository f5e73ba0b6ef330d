"""The offline training job: data preparation, tf.data pipeline, training loop, evaluation and export."""

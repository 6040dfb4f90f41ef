#!/bin/bash
#SBATCH --job-name=sweep
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --signal=USR1@120
#SBATCH --output=logs/%x-%A_%a.out
srun dlcli sweep configs/cnn_cifar.yaml 'optimizer.lr=loguniform(1e-3,3e-1)' 'optimizer.weight_decay=loguniform(1e-5,1e-3)' \
    --sampler tpe --trials 64 --pruner median --study cifar-lr \
    --storage journal:$HOME/sweeps/cifar-lr.journal -q
code=$?
# 138/143: stopped by a signal; the interrupted trial is queued again for the next worker or resubmission
if [ $code -eq 138 ] || [ $code -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; exit 0; fi
exit $code   # 0 done, 1 some trial failed (see trials.csv), 2 bad space or config

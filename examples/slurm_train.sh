#!/bin/bash
# A SLURM job that is safe to requeue: dlcli saves and exits 138 on SIGUSR1 (sent two minutes
# before the time limit), and `--resume auto` continues the newest run of this config.
#SBATCH --job-name=cnn_cifar
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
srun dlcli train configs/cnn_cifar.yaml --resume auto -q 'train.checkpoint_every={minutes: 15}'
code=$?
# 138/143: stopped by SIGUSR1/SIGTERM after saving last.pt; requeue and continue next time.
if [ $code -eq 138 ] || [ $code -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; exit 0; fi
exit $code   # 0 done, 1 runtime failure, 2 config, 3 data, 4 checkpoint: don't requeue

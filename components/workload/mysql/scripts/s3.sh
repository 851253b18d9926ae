#!/usr/bin/env bash
# Object storage helpers of the backup agent, the binlog archiver and the restore (sourced
# after common.sh). One client, rclone (a static binary the s3-tools init container copies
# from its pinned image into the pod), talks to AWS S3 or any S3-compatible endpoint.
#
# Credentials come from the mounted Secret's files and are exported to this process only
# (never argv, never a file on disk); env_auth is off, so the client never asks the instance
# metadata service (IMDSv2 with hop limit 1 keeps pods away from it on purpose).
# Every key lives under BACKUP_PREFIX, the only prefix the access key may touch.

: "${BACKUP_BUCKET:?BACKUP_BUCKET is not set}"
: "${BACKUP_PREFIX:?BACKUP_PREFIX is not set}"
: "${BACKUP_ENDPOINT:=}"                        # empty = AWS S3
: "${BACKUP_REGION:=us-east-1}"
: "${BACKUP_SSE:=}"                             # aws:kms on the aws cluster's bucket
: "${BACKUP_SSE_KMS_KEY_ID:=}"                  # and the ARN of the bucket's own KMS key
: "${BACKUP_KEY_DIR:=/etc/mysql-backup-s3}"     # the Secret: access-key-id, secret-access-key
: "${S3_TOOLS_DIR:=/opt/s3-tools}"              # where the s3-tools init container put rclone
: "${S3_CHUNK_SIZE:=64M}"                       # a stream of unknown size may have 10000 parts: 640 GiB
: "${S3_UPLOAD_CONCURRENCY:=2}"                 # parts in flight, each S3_CHUNK_SIZE of memory

if [[ -x $S3_TOOLS_DIR/rclone ]]; then RCLONE=$S3_TOOLS_DIR/rclone; else RCLONE=${RCLONE:-rclone}; fi

# s3_env: the remote "store" for this process (and its children) only.
s3_env() {
    local key_file="$BACKUP_KEY_DIR/access-key-id" secret_file="$BACKUP_KEY_DIR/secret-access-key"
    [[ -s $key_file && -s $secret_file ]] ||
        die "the backup store's access key is missing: $key_file and $secret_file must exist and not be empty"
    command -v "$RCLONE" >/dev/null 2>&1 || die "rclone not found (looked in $S3_TOOLS_DIR and PATH)"
    export RCLONE_CONFIG=/dev/null
    export RCLONE_CONFIG_STORE_TYPE=s3
    export RCLONE_CONFIG_STORE_ENV_AUTH=false
    RCLONE_CONFIG_STORE_ACCESS_KEY_ID=$(<"$key_file")
    RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY=$(<"$secret_file")
    export RCLONE_CONFIG_STORE_ACCESS_KEY_ID RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY
    export RCLONE_CONFIG_STORE_REGION=$BACKUP_REGION
    if [[ -n $BACKUP_ENDPOINT ]]; then
        export RCLONE_CONFIG_STORE_PROVIDER=Other RCLONE_CONFIG_STORE_ENDPOINT=$BACKUP_ENDPOINT
    else
        export RCLONE_CONFIG_STORE_PROVIDER=AWS
    fi
    # SSE-KMS objects have no MD5 ETag: rclone must know, or it calls every upload corrupt
    # (rclone/rclone#1824). And the key must be named: a request asking for aws:kms without a key
    # id gets S3's AWS managed key (aws/s3), not the bucket's own.
    if [[ -n $BACKUP_SSE ]]; then
        export RCLONE_CONFIG_STORE_SERVER_SIDE_ENCRYPTION=$BACKUP_SSE
        [[ -z $BACKUP_SSE_KMS_KEY_ID ]] || export RCLONE_CONFIG_STORE_SSE_KMS_KEY_ID=$BACKUP_SSE_KMS_KEY_ID
    fi
    # The key may not create or inspect buckets; it only reads and writes below its prefix.
    export RCLONE_S3_NO_CHECK_BUCKET=true
    # rclone must not inherit a CA bundle meant for another client (the AWS SDK refuses it).
    unset AWS_CA_BUNDLE
}

s3_url() { printf 's3://%s/%s/%s\n' "$BACKUP_BUCKET" "$BACKUP_PREFIX" "$1"; }
_remote() { printf 'store:%s/%s/%s\n' "$BACKUP_BUCKET" "$BACKUP_PREFIX" "$1"; }

_rclone() {
    "$RCLONE" --quiet --retries 3 --low-level-retries 10 --contimeout 15s --timeout 5m "$@"
}

# s3_explain OUTPUT: one sentence for a failed call, from the client's error text.
s3_explain() {
    case "$1" in
        *NoSuchBucket* | *"directory not found"*)
            printf 'bucket %s does not exist or is not visible to this access key' "$BACKUP_BUCKET" ;;
        # Before the generic refusal: a KMS key refused for SSE-KMS (radosgw: "Failed to retrieve the actual
        # key, kms-keyid"; AWS: AccessDenied naming kms:GenerateDataKey) is the key, not the access key.
        *kms-keyid* | *kms:GenerateDataKey* | *kms:Decrypt* | *KMS.*)
            printf 'the KMS key %s was refused for SSE-KMS: it must be the bucket'"'"'s own key and the access key may use it' \
                "${BACKUP_SSE_KMS_KEY_ID:-(none named)}" ;;
        *InvalidAccessKeyId* | *SignatureDoesNotMatch* | *AccessDenied* | *Forbidden* | *"status code: 403"*)
            printf 'access to s3://%s/%s/ was refused: check the access key in %s and its policy' \
                "$BACKUP_BUCKET" "$BACKUP_PREFIX" "$BACKUP_KEY_DIR" ;;
        *)
            printf 'the object store failed: %s' "$(printf '%s' "$1" | tr '\n\t' '  ' | cut -c1-300)" ;;
    esac
}

# s3_check: the bucket answers and this key may list its prefix; dies with the reason otherwise.
s3_check() {
    local out
    if ! out=$(_rclone lsf --max-depth 1 "store:$BACKUP_BUCKET/$BACKUP_PREFIX/" 2>&1); then
        die "$(s3_explain "$out")"
    fi
}

# s3_ls DIR: the names directly below DIR (files and dirs, dirs with a trailing /); empty if none.
s3_ls() {
    local out
    out=$(_rclone lsf --max-depth 1 "$(_remote "$1")/" 2>&1) || {
        [[ $out == *"directory not found"* ]] && _rclone lsf --max-depth 1 "store:$BACKUP_BUCKET/" >/dev/null 2>&1 &&
            return 0
        log "$(s3_explain "$out")"
        return 1
    }
    printf '%s\n' "$out" | sed '/^$/d'
}

# s3_size KEY: the object's size in bytes, or return 1 when it does not exist.
s3_size() {
    local out
    out=$(_rclone lsjson --files-only "$(_remote "$1")" 2>/dev/null) || return 1
    [[ $out =~ \"Size\":([0-9]+) ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}

# s3_put_stream KEY: stdin to the object, as a multipart upload of S3_CHUNK_SIZE parts (nothing staged on disk).
s3_put_stream() {
    _rclone rcat --s3-chunk-size "$S3_CHUNK_SIZE" --s3-upload-concurrency "$S3_UPLOAD_CONCURRENCY" "$(_remote "$1")"
}

# s3_put_file PATH KEY
s3_put_file() { _rclone copyto "$1" "$(_remote "$2")"; }

# s3_put_text KEY TEXT
s3_put_text() { printf '%s\n' "$2" | _rclone rcat "$(_remote "$1")"; }

# s3_get KEY: the object to stdout; return 1 (and print nothing) when it does not exist.
s3_get() {
    s3_size "$1" >/dev/null || return 1
    _rclone cat "$(_remote "$1")"
}

# s3_delete_dir DIR: every object below DIR.
s3_delete_dir() { _rclone purge "$(_remote "$1")"; }

# json_field NAME < JSON: the value of a top-level string or number field of the small,
# flat JSON documents these scripts write themselves (no jq in the images).
json_field() {
    local text
    text=$(cat)
    if [[ $text =~ \"$1\":[[:space:]]*\"([^\"]*)\" ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    elif [[ $text =~ \"$1\":[[:space:]]*(-?[0-9]+) ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    else
        return 1
    fi
}

# The backup ids and restore times of the settings: UTC, to the second (read by the scripts that source this).
# shellcheck disable=SC2034
BACKUP_ID_PATTERN='^[0-9]{8}T[0-9]{6}Z$'
# shellcheck disable=SC2034
RESTORE_TIME_PATTERN='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'

# epoch_of TIME: seconds since the epoch of a UTC time in either form.
epoch_of() {
    local t=$1
    if [[ $t =~ ^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z$ ]]; then
        t="${BASH_REMATCH[1]}-${BASH_REMATCH[2]}-${BASH_REMATCH[3]}T${BASH_REMATCH[4]}:${BASH_REMATCH[5]}:${BASH_REMATCH[6]}Z"
    fi
    date -u -d "$t" +%s
}

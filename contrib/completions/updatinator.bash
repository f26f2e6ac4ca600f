#!/bin/bash

__updatinator_cursor_index_in_current_word() {
    local remaining="${COMP_LINE}"

    local word
    for word in "${COMP_WORDS[@]::COMP_CWORD}"; do
        remaining="${remaining##*([[:space:]])"${word}"*([[:space:]])}"
    done

    local -ir index="$((COMP_POINT - ${#COMP_LINE} + ${#remaining}))"
    if [[ "${index}" -le 0 ]]; then
        printf 0
    else
        printf %s "${index}"
    fi
}

# positional arguments:
#
# - 1: the current (sub)command's count of positional arguments
#
# required variables:
#
# - repeating_flags: the repeating flags that the current (sub)command can accept
# - non_repeating_flags: the non-repeating flags that the current (sub)command can accept
# - repeating_options: the repeating options that the current (sub)command can accept
# - non_repeating_options: the non-repeating options that the current (sub)command can accept
# - positional_number: value ignored
# - unparsed_words: unparsed words from the current command line
#
# modified variables:
#
# - non_repeating_flags: remove flags for this (sub)command that are already on the command line
# - non_repeating_options: remove options for this (sub)command that are already on the command line
# - positional_number: set to the current positional number
# - unparsed_words: remove all flags, options, and option values for this (sub)command
__updatinator_offer_flags_options() {
    local -ir positional_count="${1}"
    positional_number=0

    local was_flag_option_terminator_seen=false
    local is_parsing_option_value=false

    local -ar unparsed_word_indices=("${!unparsed_words[@]}")
    local -i word_index
    for word_index in "${unparsed_word_indices[@]}"; do
        if "${is_parsing_option_value}"; then
            # This word is an option value:
            # Reset marker for next word iff not currently the last word
            [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]] && is_parsing_option_value=false
            unset "unparsed_words[${word_index}]"
            # Do not process this word as a flag or an option
            continue
        fi

        local word="${unparsed_words["${word_index}"]}"
        if ! "${was_flag_option_terminator_seen}"; then
            case "${word}" in
            --)
                unset "unparsed_words[${word_index}]"
                # by itself -- is a flag/option terminator, but if it is the last word, it is the start of a completion
                if [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]]; then
                    was_flag_option_terminator_seen=true
                fi
                continue
                ;;
            -*)
                # ${word} is a flag or an option
                # If ${word} is an option, mark that the next word to be parsed is an option value
                local option
                for option in "${repeating_options[@]}" "${non_repeating_options[@]}"; do
                    [[ "${word}" = "${option}" ]] && is_parsing_option_value=true && break
                done

                # Remove ${word} from ${non_repeating_flags} or ${non_repeating_options} so it isn't offered again
                local not_found=true
                local -i index
                for index in "${!non_repeating_flags[@]}"; do
                    if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                        unset "non_repeating_flags[${index}]"
                        non_repeating_flags=("${non_repeating_flags[@]}")
                        not_found=false
                        break
                    fi
                done
                if "${not_found}"; then
                    for index in "${!non_repeating_flags[@]}"; do
                        if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                            unset "non_repeating_flags[${index}]"
                            non_repeating_flags=("${non_repeating_flags[@]}")
                            break
                        fi
                    done
                fi
                unset "unparsed_words[${word_index}]"
                continue
                ;;
            esac
        fi

        # ${word} is neither a flag, nor an option, nor an option value
        if [[ "${positional_number}" -lt "${positional_count}" || "${positional_count}" -lt 0 ]]; then
            # ${word} is a positional
            ((positional_number++))
            unset "unparsed_words[${word_index}]"
        else
            if [[ -z "${word}" ]]; then
                # Could be completing a flag, option, or subcommand
                positional_number=-1
            else
                # ${word} is a subcommand or invalid, so stop processing this (sub)command
                positional_number=-2
            fi
            break
        fi
    done

    unparsed_words=("${unparsed_words[@]}")

    if\
        ! "${was_flag_option_terminator_seen}"\
        && ! "${is_parsing_option_value}"\
        && [[ ("${cur}" = -* && "${positional_number}" -ge 0) || "${positional_number}" -eq -1 ]]
    then
        COMPREPLY+=($(compgen -W "${repeating_flags[*]} ${non_repeating_flags[*]} ${repeating_options[*]} ${non_repeating_options[*]}" -- "${cur}"))
    fi
}

__updatinator_add_completions() {
    local completion
    while IFS='' read -r completion; do
        COMPREPLY+=("${completion}")
    done < <(IFS=$'\n' compgen "${@}" -- "${cur}")
}

__updatinator_custom_complete() {
    if [[ -n "${cur}" || -z ${COMP_WORDS[${COMP_CWORD}]} || "${COMP_LINE:${COMP_POINT}:1}" != ' ' ]]; then
        local -ar words=("${COMP_WORDS[@]}")
    else
        local -ar words=("${COMP_WORDS[@]::${COMP_CWORD}}" '' "${COMP_WORDS[@]:${COMP_CWORD}}")
    fi

    "${COMP_WORDS[0]}" "${@}" "${words[@]}"
}

_updatinator() {
    local state
    state="$(shopt -p;shopt -po)"
    trap "${state//$'\n'/;}" RETURN
    shopt -s extglob
    set +o history +o posix

    local -xr SAP_SHELL=bash
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(IFS='.';printf %s "${BASH_VERSINFO[*]}")"
    local -r SAP_SHELL_VERSION

    local -r cur="${2}"
    local -r prev="${3}"

    local -i positional_number
    local -a unparsed_words=("${COMP_WORDS[@]:1:${COMP_CWORD}}")

    local -a repeating_flags=()
    local -a non_repeating_flags=(--version -h --help)
    local -a repeating_options=()
    local -a non_repeating_options=()
    __updatinator_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    keygen|generate|sign|verify|diff|fsck|publish|delta|pack|adopt|plan|apply|get-manifest|fetch|run|repl|agent|serve|upgrade|deploy|rollback|status|gc|mark-good|fleet|help)
        # Offer subcommand argument completions
        "_updatinator_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'keygen generate sign verify diff fsck publish delta pack adopt plan apply get-manifest fetch run repl agent serve upgrade deploy rollback status gc mark-good fleet help' -- "${cur}"))
        ;;
    esac
}

_updatinator_keygen() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--secret-key --public-key)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--secret-key')
        return
        ;;
    '--public-key')
        return
        ;;
    esac
}

_updatinator_generate() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--tree --repo --image --version --sign-key --compression-level --jobs)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--tree')
        return
        ;;
    '--repo')
        return
        ;;
    '--image')
        return
        ;;
    '--version')
        return
        ;;
    '--sign-key')
        return
        ;;
    '--compression-level')
        return
        ;;
    '--jobs')
        return
        ;;
    esac
}

_updatinator_sign() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--secret-key)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--secret-key')
        return
        ;;
    esac
}

_updatinator_verify() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--keyring)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--keyring')
        return
        ;;
    esac
}

_updatinator_diff() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=()
    __updatinator_offer_flags_options 2
}

_updatinator_fsck() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--tree --manifest --repo)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--tree')
        return
        ;;
    '--manifest')
        return
        ;;
    '--repo')
        return
        ;;
    esac
}

_updatinator_publish() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--repo --channel --image --version --expires --secret-key)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--repo')
        return
        ;;
    '--channel')
        return
        ;;
    '--image')
        return
        ;;
    '--version')
        return
        ;;
    '--expires')
        return
        ;;
    '--secret-key')
        return
        ;;
    esac
}

_updatinator_delta() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--repo --from --to --secret-key --jobs --level)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--repo')
        return
        ;;
    '--from')
        return
        ;;
    '--to')
        return
        ;;
    '--secret-key')
        return
        ;;
    '--jobs')
        return
        ;;
    '--level')
        return
        ;;
    esac
}

_updatinator_pack() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--repo --secret-key)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--repo')
        return
        ;;
    '--secret-key')
        return
        ;;
    esac
}

_updatinator_adopt() {
    repeating_flags=()
    non_repeating_flags=(--live --version -h --help)
    repeating_options=()
    non_repeating_options=(--root --manifest --keyring)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--manifest')
        return
        ;;
    '--keyring')
        return
        ;;
    esac
}

_updatinator_plan() {
    repeating_flags=()
    non_repeating_flags=(--live --json --version -h --help)
    repeating_options=(--blobs --mirror)
    non_repeating_options=(--root --to --from --keyring --ca-file)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--to')
        return
        ;;
    '--from')
        return
        ;;
    '--blobs')
        return
        ;;
    '--mirror')
        return
        ;;
    '--keyring')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_apply() {
    repeating_flags=()
    non_repeating_flags=(--live --resume --json --version -h --help)
    repeating_options=(--blobs --mirror)
    non_repeating_options=(--root --to --from --rate-limit --concurrency --ca-file --keyring)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--to')
        return
        ;;
    '--from')
        return
        ;;
    '--blobs')
        return
        ;;
    '--mirror')
        return
        ;;
    '--rate-limit')
        return
        ;;
    '--concurrency')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--keyring')
        return
        ;;
    esac
}

_updatinator_get-manifest() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=(--mirror)
    non_repeating_options=(--rate-limit --concurrency --ca-file --out --keyring)
    __updatinator_offer_flags_options 2

    # Offer option value completions
    case "${prev}" in
    '--mirror')
        return
        ;;
    '--rate-limit')
        return
        ;;
    '--concurrency')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--out')
        return
        ;;
    '--keyring')
        return
        ;;
    esac
}

_updatinator_fetch() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=(--mirror)
    non_repeating_options=(--to --rate-limit --concurrency --ca-file --cache --from --root)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--to')
        return
        ;;
    '--mirror')
        return
        ;;
    '--rate-limit')
        return
        ;;
    '--concurrency')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--cache')
        return
        ;;
    '--from')
        return
        ;;
    '--root')
        return
        ;;
    esac
}

_updatinator_run() {
    repeating_flags=()
    non_repeating_flags=(--allow-os --version -h --help)
    repeating_options=(--allow-path)
    non_repeating_options=(--root --state --config --instruction-limit --time-limit --memory-limit --ca-file)
    __updatinator_offer_flags_options -1

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--state')
        return
        ;;
    '--config')
        return
        ;;
    '--allow-path')
        return
        ;;
    '--instruction-limit')
        return
        ;;
    '--time-limit')
        return
        ;;
    '--memory-limit')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_repl() {
    repeating_flags=()
    non_repeating_flags=(--allow-os --version -h --help)
    repeating_options=(--allow-path)
    non_repeating_options=(--root --state --config --instruction-limit --time-limit --memory-limit --ca-file)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--state')
        return
        ;;
    '--config')
        return
        ;;
    '--allow-path')
        return
        ;;
    '--instruction-limit')
        return
        ;;
    '--time-limit')
        return
        ;;
    '--memory-limit')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_agent() {
    repeating_flags=()
    non_repeating_flags=(--allow-os --once --version -h --help)
    repeating_options=(--allow-path)
    non_repeating_options=(--root --state --config --instruction-limit --time-limit --memory-limit --ca-file --policy)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--state')
        return
        ;;
    '--config')
        return
        ;;
    '--allow-path')
        return
        ;;
    '--instruction-limit')
        return
        ;;
    '--time-limit')
        return
        ;;
    '--memory-limit')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--policy')
        return
        ;;
    esac
}

_updatinator_serve() {
    repeating_flags=()
    non_repeating_flags=(--peer --no-batch-precompute --public-fleet --no-batches --version -h --help)
    repeating_options=(--follow)
    non_repeating_options=(--repo --policy --decision-key --listen --db --config --instruction-limit --memory-limit --policy-time-limit --policy-workers --batch-cache --batch-cache-bytes --batch-workers --batch-queue --batch-level --batch-precompute-hours --batch-precompute-interval --operator-token-file --admission --enrolment-token-file --tls-cert --tls-key --rollout-lifetime --upstream --keyring --upstream-cache-bytes --upstream-interval --prefetch-window --prefetch-rate --school-id --school-key --school-enrolment-token-file --upstream-keyring --forward-interval --ca-file --root --sysroot --cache)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--repo')
        return
        ;;
    '--policy')
        return
        ;;
    '--decision-key')
        return
        ;;
    '--listen')
        return
        ;;
    '--db')
        return
        ;;
    '--config')
        return
        ;;
    '--instruction-limit')
        return
        ;;
    '--memory-limit')
        return
        ;;
    '--policy-time-limit')
        return
        ;;
    '--policy-workers')
        return
        ;;
    '--batch-cache')
        return
        ;;
    '--batch-cache-bytes')
        return
        ;;
    '--batch-workers')
        return
        ;;
    '--batch-queue')
        return
        ;;
    '--batch-level')
        return
        ;;
    '--batch-precompute-hours')
        return
        ;;
    '--batch-precompute-interval')
        return
        ;;
    '--operator-token-file')
        return
        ;;
    '--admission')
        return
        ;;
    '--enrolment-token-file')
        return
        ;;
    '--tls-cert')
        return
        ;;
    '--tls-key')
        return
        ;;
    '--rollout-lifetime')
        return
        ;;
    '--upstream')
        return
        ;;
    '--keyring')
        return
        ;;
    '--follow')
        return
        ;;
    '--upstream-cache-bytes')
        return
        ;;
    '--upstream-interval')
        return
        ;;
    '--prefetch-window')
        return
        ;;
    '--prefetch-rate')
        return
        ;;
    '--school-id')
        return
        ;;
    '--school-key')
        return
        ;;
    '--school-enrolment-token-file')
        return
        ;;
    '--upstream-keyring')
        return
        ;;
    '--forward-interval')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--root')
        return
        ;;
    '--sysroot')
        return
        ;;
    '--cache')
        return
        ;;
    esac
}

_updatinator_upgrade() {
    repeating_flags=()
    non_repeating_flags=(--live --json --version -h --help)
    repeating_options=(--mirror)
    non_repeating_options=(--root --server --keyring --decision-keyring --from --channel --peer-url --device --device-key --enrolment-token-file --ca-file)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--root')
        return
        ;;
    '--server')
        return
        ;;
    '--keyring')
        return
        ;;
    '--decision-keyring')
        return
        ;;
    '--mirror')
        return
        ;;
    '--from')
        return
        ;;
    '--channel')
        return
        ;;
    '--peer-url')
        return
        ;;
    '--device')
        return
        ;;
    '--device-key')
        return
        ;;
    '--enrolment-token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_deploy() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=(--blobs --mirror)
    non_repeating_options=(--sysroot --to --keyring --rate-limit --concurrency --ca-file)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--sysroot')
        return
        ;;
    '--to')
        return
        ;;
    '--keyring')
        return
        ;;
    '--blobs')
        return
        ;;
    '--mirror')
        return
        ;;
    '--rate-limit')
        return
        ;;
    '--concurrency')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_rollback() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--sysroot)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--sysroot')
        return
        ;;
    esac
}

_updatinator_status() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--sysroot)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--sysroot')
        return
        ;;
    esac
}

_updatinator_gc() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--sysroot --keep)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--sysroot')
        return
        ;;
    '--keep')
        return
        ;;
    esac
}

_updatinator_mark-good() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=(--sysroot)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--sysroot')
        return
        ;;
    esac
}

_updatinator_fleet() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=()
    __updatinator_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    devices|device|rollouts|pause|resume|halt|advance|pin|release|admit|reject)
        # Offer subcommand argument completions
        "_updatinator_fleet_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'devices device rollouts pause resume halt advance pin release admit reject' -- "${cur}"))
        ;;
    esac
}

_updatinator_fleet_devices() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file --image --version --status --school --decision --admission --seen-within --limit)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--image')
        return
        ;;
    '--version')
        return
        ;;
    '--status')
        return
        ;;
    '--school')
        return
        ;;
    '--decision')
        return
        ;;
    '--admission')
        return
        ;;
    '--seen-within')
        return
        ;;
    '--limit')
        return
        ;;
    esac
}

_updatinator_fleet_device() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_rollouts() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_pause() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file --reason)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--reason')
        return
        ;;
    esac
}

_updatinator_fleet_resume() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_halt() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file --reason)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    '--reason')
        return
        ;;
    esac
}

_updatinator_fleet_advance() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_pin() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 3

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_release() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_admit() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_fleet_reject() {
    repeating_flags=()
    non_repeating_flags=(--json --version -h --help)
    repeating_options=()
    non_repeating_options=(--server --token-file --ca-file)
    __updatinator_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--server')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca-file')
        return
        ;;
    esac
}

_updatinator_help() {
    repeating_flags=()
    non_repeating_flags=(--version)
    repeating_options=()
    non_repeating_options=()
    __updatinator_offer_flags_options -1
}

complete -o filenames -F _updatinator updatinator

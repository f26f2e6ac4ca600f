function __updatinator_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __updatinator_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __updatinator_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __updatinator_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __updatinator_parse_tokens -S
    set -l unparsed_tokens (__updatinator_tokens -pc)
    switch $unparsed_tokens[1]
    case 'updatinator'
        __updatinator_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'keygen'
            __updatinator_parse_subcommand 0 'secret-key=' 'public-key=' 'version' 'h/help'
        case 'generate'
            __updatinator_parse_subcommand 0 'tree=' 'repo=' 'image=' 'version=' 'sign-key=' 'compression-level=' 'jobs=' 'version' 'h/help'
        case 'sign'
            __updatinator_parse_subcommand 1 'secret-key=' 'version' 'h/help'
        case 'verify'
            __updatinator_parse_subcommand 1 'keyring=' 'json' 'version' 'h/help'
        case 'diff'
            __updatinator_parse_subcommand 2 'json' 'version' 'h/help'
        case 'fsck'
            __updatinator_parse_subcommand 0 'tree=' 'manifest=' 'repo=' 'json' 'version' 'h/help'
        case 'publish'
            __updatinator_parse_subcommand 0 'repo=' 'channel=' 'image=' 'version=' 'expires=' 'secret-key=' 'version' 'h/help'
        case 'delta'
            __updatinator_parse_subcommand 0 'repo=' 'from=' 'to=' 'secret-key=' 'jobs=' 'level=' 'version' 'h/help'
        case 'pack'
            __updatinator_parse_subcommand 1 'repo=' 'secret-key=' 'version' 'h/help'
        case 'plan'
            __updatinator_parse_subcommand 0 'root=' 'to=' 'from=' 'blobs=+' 'live' 'mirror=+' 'keyring=' 'json' 'version' 'h/help'
        case 'apply'
            __updatinator_parse_subcommand 0 'root=' 'to=' 'from=' 'blobs=+' 'live' 'mirror=+' 'rate-limit=' 'concurrency=' 'keyring=' 'resume' 'json' 'version' 'h/help'
        case 'get-manifest'
            __updatinator_parse_subcommand 2 'mirror=+' 'rate-limit=' 'concurrency=' 'out=' 'keyring=' 'json' 'version' 'h/help'
        case 'fetch'
            __updatinator_parse_subcommand 0 'to=' 'mirror=+' 'rate-limit=' 'concurrency=' 'cache=' 'from=' 'root=' 'json' 'version' 'h/help'
        case 'run'
            __updatinator_parse_subcommand -r 2 'root=' 'state=' 'config=' 'allow-os' 'instruction-limit=' 'memory-limit=' 'version' 'h/help'
        case 'repl'
            __updatinator_parse_subcommand 0 'root=' 'state=' 'config=' 'allow-os' 'instruction-limit=' 'memory-limit=' 'version' 'h/help'
        case 'agent'
            __updatinator_parse_subcommand 0 'root=' 'state=' 'config=' 'allow-os' 'instruction-limit=' 'memory-limit=' 'policy=' 'once' 'version' 'h/help'
        case 'serve'
            __updatinator_parse_subcommand 0 'peer' 'repo=' 'policy=' 'decision-key=' 'listen=' 'db=' 'config=' 'instruction-limit=' 'memory-limit=' 'batch-cache=' 'batch-cache-bytes=' 'batch-workers=' 'batch-queue=' 'batch-level=' 'no-batches' 'root=' 'sysroot=' 'cache=' 'version' 'h/help'
        case 'upgrade'
            __updatinator_parse_subcommand 0 'root=' 'server=' 'keyring=' 'decision-keyring=' 'mirror=+' 'from=' 'channel=' 'peer-url=' 'device=' 'live' 'json' 'version' 'h/help'
        case 'deploy'
            __updatinator_parse_subcommand 0 'sysroot=' 'to=' 'keyring=' 'blobs=+' 'mirror=+' 'rate-limit=' 'concurrency=' 'json' 'version' 'h/help'
        case 'rollback'
            __updatinator_parse_subcommand 0 'sysroot=' 'json' 'version' 'h/help'
        case 'status'
            __updatinator_parse_subcommand 0 'sysroot=' 'json' 'version' 'h/help'
        case 'gc'
            __updatinator_parse_subcommand 0 'sysroot=' 'keep=' 'json' 'version' 'h/help'
        case 'mark-good'
            __updatinator_parse_subcommand 0 'sysroot=' 'version' 'h/help'
        case 'help'
            __updatinator_parse_subcommand -r 1 'version'
        end
    end
end

function __updatinator_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __updatinator_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __updatinator_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __updatinator_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__updatinator_tokens -p)
    if test -z "$(__updatinator_tokens -t)"
        set -l index (count (__updatinator_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'updatinator' -f
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'keygen' -d 'Creates a new Ed25519 signing key pair.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'generate' -d 'Turns an image tree into a manifest and compressed blobs in a repository.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'sign' -d 'Adds a signature to a manifest\'s detached signature file.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'verify' -d 'Checks a manifest\'s or channel file\'s signatures against a keyring.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'diff' -d 'Lists what differs between two manifests and what moving between them costs.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'fsck' -d 'Checks a tree, and optionally a repository\'s blobs, against a manifest.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'publish' -d 'Points a channel at an image version with signed, expiring metadata.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'delta' -d 'Writes the content-pair deltas for a move between two image versions of a repository.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'pack' -d 'Writes an image version\'s pack, for clients of static mirrors.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'plan' -d 'Shows what moving a tree to another image would cost, without changing anything.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'apply' -d 'Moves a tree to another image in place, from local blob directories or mirrors.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'get-manifest' -d 'Downloads an image version\'s manifest and its signature from mirrors.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'fetch' -d 'Downloads the blobs a target image needs into a local cache.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'run' -d 'Runs a Lua script once, with the upd API.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'repl' -d 'Starts an interactive Lua prompt with the upd API, for debugging a machine.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'agent' -d 'Runs a client policy on its schedule until stopped.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'serve' -d 'Runs the school server, or with --peer a laptop\'s peer server.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'upgrade' -d 'Asks the school server what to run and moves the tree there.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'deploy' -d 'Builds a manifest\'s image beside the current deployment and switches to it.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'rollback' -d 'Switches back to the previous deployment.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'status' -d 'Shows the deployments of a sysroot and their disk use.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'gc' -d 'Removes old deployments and cached blobs nothing uses.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'mark-good' -d 'Marks the current deployment good, so that the boot counter keeps it.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_positional "updatinator" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator keygen" secret-key' -l 'secret-key' -d 'Where to write the secret key.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator keygen" public-key' -l 'public-key' -d 'Where to write the public key, for keyrings.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator keygen" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator keygen" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" tree' -l 'tree' -d 'The image tree to describe.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" repo' -l 'repo' -d 'The repository to write into; created when missing.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" image' -l 'image' -d 'The image name, e.g. olpc-ext3.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" version' -l 'version' -d 'The image version, e.g. 406.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" sign-key' -l 'sign-key' -d 'Sign the manifest with this secret key.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" compression-level' -l 'compression-level' -d 'The zlib level (0-9) of a new repository\'s blobs; default 6.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" jobs' -l 'jobs' -d 'How many files to hash and compress at once; default one per core.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator generate" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator sign" secret-key' -l 'secret-key' -d 'The secret key to sign with.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator sign" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator sign" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator verify" keyring' -l 'keyring' -d 'The directory of trusted public keys.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator verify" json' -l 'json' -d 'Print the result as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator verify" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator verify" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator diff" json' -l 'json' -d 'Print JSON instead of text.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator diff" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator diff" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" tree' -l 'tree' -d 'The tree to check.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" manifest' -l 'manifest' -d 'The manifest the tree should match.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" repo' -l 'repo' -d 'Also check this repository\'s blobs for the manifest\'s contents.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" json' -l 'json' -d 'Print JSON instead of text.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fsck" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" repo' -l 'repo' -d 'The repository.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" channel' -l 'channel' -d 'The channel name, e.g. stable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" image' -l 'image' -d 'The image name.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" version' -l 'version' -d 'The image version; its manifest must exist in the repository.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" expires' -l 'expires' -d 'How long the metadata stays valid, e.g. 7d, 12h, 90m.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" secret-key' -l 'secret-key' -d 'The secret key that signs the channel metadata.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator publish" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" repo' -l 'repo' -d 'The repository.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" from' -l 'from' -d 'The source image version, as IMAGE/VERSION.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" to' -l 'to' -d 'The target image version, as IMAGE/VERSION.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" secret-key' -l 'secret-key' -d 'The secret key that signs the target version\'s delta index.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" jobs' -l 'jobs' -d 'Deltas computed at once (default: one per core).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" level' -l 'level' -d 'The zstd compression level, 1 to 22.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator delta" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator pack" repo' -l 'repo' -d 'The repository.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator pack" secret-key' -l 'secret-key' -d 'The secret key that signs the delta index again, with the pack\'s size.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator pack" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator pack" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" root' -l 'root' -d 'The tree to move.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" to' -l 'to' -d 'The manifest to move to.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" from' -l 'from' -d 'The manifest the tree matches now; default: its installed manifest.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan"' -l 'blobs' -d 'A local blob directory in repository layout (DIR/<hh>/<hash>); repeatable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" live' -l 'live' -d 'The tree is the root a system runs from (implied when it is /): its runtime mounts (/dev /proc /sys /run), /tmp, /var, /home, /root, /media, /mnt and /lost+found are the machine\'s and left alone, and /etc is merged three ways (local changes kept, the new image\'s version of a conflicting file beside it as NAME.updatinator-new).'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan"' -l 'mirror' -d 'A mirror the apply will download from; repeatable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" keyring' -l 'keyring' -d 'The directory of trusted public keys that must have signed the mirrors\' delta index; without it, no deltas are counted.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" json' -l 'json' -d 'Print JSON instead of text.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator plan" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" root' -l 'root' -d 'The tree to move.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" to' -l 'to' -d 'The manifest to move to.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" from' -l 'from' -d 'The manifest the tree matches now; default: its installed manifest.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply"' -l 'blobs' -d 'A local blob directory in repository layout (DIR/<hh>/<hash>); repeatable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" live' -l 'live' -d 'The tree is the root a system runs from (implied when it is /): its runtime mounts (/dev /proc /sys /run), /tmp, /var, /home, /root, /media, /mnt and /lost+found are the machine\'s and left alone, and /etc is merged three ways (local changes kept, the new image\'s version of a conflicting file beside it as NAME.updatinator-new).'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply"' -l 'mirror' -d 'A repository to download from (http://, https:// or file://); repeatable, tried in order.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" rate-limit' -l 'rate-limit' -d 'The most bytes per second to download, for all transfers together.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" concurrency' -l 'concurrency' -d 'How many downloads run at once.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" keyring' -l 'keyring' -d 'The directory of trusted public keys that must have signed the target manifest (and the mirrors\' delta index).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" resume' -l 'resume' -d 'Continue an interrupted apply (apply always does; without one it starts afresh).'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" json' -l 'json' -d 'Print the report as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator apply" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest"' -l 'mirror' -d 'A repository to download from (http://, https:// or file://); repeatable, tried in order.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" rate-limit' -l 'rate-limit' -d 'The most bytes per second to download, for all transfers together.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" concurrency' -l 'concurrency' -d 'How many downloads run at once.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" out' -l 'out' -d 'The directory to write the manifest and its signature into.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" keyring' -l 'keyring' -d 'Verify the manifest against this directory of trusted keys.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" json' -l 'json' -d 'Print the result as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator get-manifest" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" to' -l 'to' -d 'The manifest to fetch for.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch"' -l 'mirror' -d 'A repository to download from (http://, https:// or file://); repeatable, tried in order.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" rate-limit' -l 'rate-limit' -d 'The most bytes per second to download, for all transfers together.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" concurrency' -l 'concurrency' -d 'How many downloads run at once.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" cache' -l 'cache' -d 'The directory to download blobs into.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" from' -l 'from' -d 'The manifest the tree matches now; its contents are not downloaded.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" root' -l 'root' -d 'The tree; its installed manifest is used when --from is not given.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" json' -l 'json' -d 'Print the report as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator fetch" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" root' -l 'root' -d 'The tree that upd functions act on when a script gives no root.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" state' -l 'state' -d 'The file upd.state keeps its values in; default: ROOT/.updatinator/policy-state.json with --root, else /var/lib/updatinator/policy-state.json.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" config' -l 'config' -d 'A JSON file of settings that upd.config lays over a policy\'s defaults; the agent reads /etc/updatinator/policy.json when it exists.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" allow-os' -l 'allow-os' -d 'Grant scripts Lua\'s io and os libraries.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" instruction-limit' -l 'instruction-limit' -d 'Lua instructions a script may run per call (0 for no limit); default 200 million, none in the REPL.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" memory-limit' -l 'memory-limit' -d 'Bytes of memory the Lua state may use (0 for no limit).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator run" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" root' -l 'root' -d 'The tree that upd functions act on when a script gives no root.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" state' -l 'state' -d 'The file upd.state keeps its values in; default: ROOT/.updatinator/policy-state.json with --root, else /var/lib/updatinator/policy-state.json.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" config' -l 'config' -d 'A JSON file of settings that upd.config lays over a policy\'s defaults; the agent reads /etc/updatinator/policy.json when it exists.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" allow-os' -l 'allow-os' -d 'Grant scripts Lua\'s io and os libraries.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" instruction-limit' -l 'instruction-limit' -d 'Lua instructions a script may run per call (0 for no limit); default 200 million, none in the REPL.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" memory-limit' -l 'memory-limit' -d 'Bytes of memory the Lua state may use (0 for no limit).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator repl" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" root' -l 'root' -d 'The tree that upd functions act on when a script gives no root.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" state' -l 'state' -d 'The file upd.state keeps its values in; default: ROOT/.updatinator/policy-state.json with --root, else /var/lib/updatinator/policy-state.json.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" config' -l 'config' -d 'A JSON file of settings that upd.config lays over a policy\'s defaults; the agent reads /etc/updatinator/policy.json when it exists.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" allow-os' -l 'allow-os' -d 'Grant scripts Lua\'s io and os libraries.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" instruction-limit' -l 'instruction-limit' -d 'Lua instructions a script may run per call (0 for no limit); default 200 million, none in the REPL.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" memory-limit' -l 'memory-limit' -d 'Bytes of memory the Lua state may use (0 for no limit).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" policy' -l 'policy' -d 'The policy script.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" once' -l 'once' -d 'Run one tick now and exit.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator agent" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" peer' -l 'peer' -d 'Serve the blobs of an installed tree (--root) or of a sysroot\'s current deployment (--sysroot) to neighbours.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" repo' -l 'repo' -d 'The repository directory to serve.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" policy' -l 'policy' -d 'The server policy script (Lua), which defines decide(device).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" decision-key' -l 'decision-key' -d 'The secret key that signs decisions (never a build key).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" listen' -l 'listen' -d 'Where to listen, HOST:PORT (port 0 picks a free one).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" db' -l 'db' -d 'The fleet inventory\'s SQLite file; default: REPO/fleet.sqlite.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" config' -l 'config' -d 'A JSON file of settings that upd.config lays over the policy\'s defaults.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" instruction-limit' -l 'instruction-limit' -d 'Lua instructions a policy may run per request (0 for no limit).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" memory-limit' -l 'memory-limit' -d 'Bytes of memory each policy state may use (0 for no limit).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" batch-cache' -l 'batch-cache' -d 'Where computed batches are kept; default: REPO/.batch-cache.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" batch-cache-bytes' -l 'batch-cache-bytes' -d 'The most bytes of batches kept; the least recently used go first.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" batch-workers' -l 'batch-workers' -d 'Batches computed at once; more wait in a queue.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" batch-queue' -l 'batch-queue' -d 'Batch requests that may wait for a computation; more are refused (503).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" batch-level' -l 'batch-level' -d 'The zstd level of batches, 1 to 22.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" no-batches' -l 'no-batches' -d 'Answer no batch requests (devices then download contents one by one).'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" root' -l 'root' -d 'With --peer: the installed tree whose contents are served.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" sysroot' -l 'sysroot' -d 'With --peer: the sysroot whose current deployment\'s contents are served (staged deployments).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" cache' -l 'cache' -d 'With --peer: where compressed blobs are kept once made, emptied at start; default ROOT/.updatinator/peer-cache or SYSROOT/peer-cache.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator serve" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" root' -l 'root' -d 'The tree to upgrade.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" server' -l 'server' -d 'The school server\'s URL.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" keyring' -l 'keyring' -d 'The directory of trusted build keys, which sign manifests.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" decision-keyring' -l 'decision-keyring' -d 'The directory of trusted school-server keys, which sign decisions.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade"' -l 'mirror' -d 'A repository to download from after the peers and before the server; repeatable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" from' -l 'from' -d 'The manifest the tree matches, for a tree with no installed-manifest record yet.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" channel' -l 'channel' -d 'The channel to ask for.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" peer-url' -l 'peer-url' -d 'This device\'s peer server URL (serve --peer), advertised to the school server.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" device' -l 'device' -d 'This device\'s id; default UPDATINATOR_DEVICE_ID, else /etc/machine-id.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" live' -l 'live' -d 'The tree is the root a system runs from (as apply --live; implied when it is /): its runtime mounts and state are the machine\'s, /etc is merged.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" json' -l 'json' -d 'Print the outcome as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator upgrade" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" sysroot' -l 'sysroot' -d 'The directory of deployments (DIR/deployments, DIR/current, DIR/previous).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" to' -l 'to' -d 'The manifest to deploy.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" keyring' -l 'keyring' -d 'The directory of trusted public keys that must have signed the manifest.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy"' -l 'blobs' -d 'A blob directory (repository layout) to read contents from; repeatable.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy"' -l 'mirror' -d 'A repository to download from (http://, https:// or file://); repeatable, tried in order.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" rate-limit' -l 'rate-limit' -d 'The most bytes per second to download, for all transfers together.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" concurrency' -l 'concurrency' -d 'How many downloads run at once.' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" json' -l 'json' -d 'Print the report as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator deploy" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator rollback" sysroot' -l 'sysroot' -d 'The directory of deployments (DIR/deployments, DIR/current, DIR/previous).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator rollback" json' -l 'json' -d 'Print the result as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator rollback" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator rollback" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator status" sysroot' -l 'sysroot' -d 'The directory of deployments (DIR/deployments, DIR/current, DIR/previous).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator status" json' -l 'json' -d 'Print the status as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator status" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator gc" sysroot' -l 'sysroot' -d 'The directory of deployments (DIR/deployments, DIR/current, DIR/previous).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator gc" keep' -l 'keep' -d 'How many deployments to keep (the current, previous and pending ones always stay).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator gc" json' -l 'json' -d 'Print the result as JSON.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator gc" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator gc" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator mark-good" sysroot' -l 'sysroot' -d 'The directory of deployments (DIR/deployments, DIR/current, DIR/previous).' -rfka ''
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator mark-good" version' -l 'version' -d 'Show the version.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator mark-good" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'updatinator' -n '__updatinator_should_offer_completions_for_flags_or_options "updatinator help" version' -l 'version' -d 'Show the version.'

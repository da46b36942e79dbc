/**
 * The words screens are made of: app names, people, hosts, paths, products, and the error topics with
 * their titles, messages, details, paraphrases and the fact a question can ask about, in English and
 * Chinese. Templates name their facts in braces (`{port}`); `facts.ts` fills them in.
 */

/** Languages a screen is written in. */
export const SCREEN_LANGUAGES = ["en", "zh"] as const;
export type ScreenLanguage = (typeof SCREEN_LANGUAGES)[number];

/** Text per language. */
export type Localized<Value> = Record<ScreenLanguage, Value>;

/** Facts a template can name. */
export const FACT_KINDS = [
  "port",
  "host",
  "ip",
  "path",
  "file",
  "user",
  "date",
  "seconds",
  "megabytes",
  "version",
  "card",
  "amount",
  "count",
  "table",
  "service",
] as const;
export type FactKind = (typeof FACT_KINDS)[number];

/** A question about one fact of an error, and how the answer is said. */
export interface FactQuestion {
  fact: FactKind;
  question: Localized<string[]>;
}

/** One kind of error a screen can show. */
export interface ErrorTopic {
  id: string;
  /** Facts its templates use. */
  facts: readonly FactKind[];
  /** Words for `ERR_…` codes. */
  codeWords: readonly string[];
  title: Localized<string[]>;
  message: Localized<string[]>;
  detail: Localized<string[]>;
  /** Queries that describe the problem without its words ("the database connection problem"). */
  paraphrase: Localized<string[]>;
  /** A question about a fact of the message ("What port does it fail on?"). */
  factQuestion: FactQuestion;
}

const APP_FIRST = [
  "Northwind",
  "Bluebird",
  "Ironclad",
  "Maple",
  "Harbor",
  "Quartz",
  "Lumen",
  "Cobalt",
  "Juniper",
  "Atlas",
  "Kestrel",
  "Orchid",
  "Summit",
  "Pioneer",
  "Beacon",
  "Willow",
  "Falcon",
  "Granite",
  "Nimbus",
  "Vertex",
  "Saffron",
  "Tundra",
  "Meridian",
  "Aurora",
  "Cedar",
  "Polaris",
  "Redwood",
  "Zephyr",
  "Onyx",
  "Sparrow",
];
const APP_SECOND = [
  "CRM",
  "Ledger",
  "Mail",
  "Drive",
  "Point of Sale",
  "Inventory",
  "Helpdesk",
  "Payroll",
  "Backup",
  "Analytics",
  "Scheduler",
  "VPN Client",
  "Sync",
  "Studio",
  "Portal",
  "Monitor",
  "Billing",
  "Notes",
  "Deploy",
  "Gateway",
];
const APP_ZH_FIRST = [
  "云帆",
  "星河",
  "青松",
  "蓝海",
  "金桥",
  "明镜",
  "飞鸿",
  "长城",
  "天池",
  "和风",
  "锦程",
  "瀚海",
];
const APP_ZH_SECOND = [
  "财务系统",
  "客户管理",
  "办公助手",
  "收银台",
  "库存管理",
  "邮件客户端",
  "云盘",
  "工单系统",
  "考勤系统",
  "数据备份",
  "监控平台",
  "支付网关",
];

/** App names: two English words, or (for Chinese screens, often) two Chinese words. */
export const APP_NAMES: Localized<readonly string[]> = {
  en: APP_FIRST.flatMap((first) => APP_SECOND.map((second) => `${first} ${second}`)),
  zh: APP_ZH_FIRST.flatMap((first) => APP_ZH_SECOND.map((second) => `${first}${second}`)),
};

export const FIRST_NAMES = [
  "alice",
  "bob",
  "chen",
  "dmitri",
  "elena",
  "farah",
  "gustav",
  "hana",
  "ivan",
  "jia",
  "kofi",
  "lucia",
  "mateo",
  "nora",
  "omar",
  "priya",
  "quinn",
  "rosa",
  "sven",
  "tomoko",
  "uma",
  "victor",
  "wei",
  "xavier",
  "yusuf",
  "zoe",
];
export const LAST_NAMES = [
  "Anders",
  "Brooks",
  "Castillo",
  "Dubois",
  "Eriksen",
  "Fischer",
  "Garcia",
  "Haddad",
  "Ito",
  "Jensen",
  "Kowalski",
  "Li",
  "Moreau",
  "Nakamura",
  "Okafor",
  "Petrov",
  "Rossi",
  "Silva",
  "Tanaka",
  "Wang",
];
export const ZH_NAMES = [
  "张伟",
  "王芳",
  "李娜",
  "刘洋",
  "陈静",
  "杨帆",
  "赵磊",
  "黄敏",
  "周杰",
  "吴婷",
  "孙浩",
  "朱琳",
];

export const HOST_WORDS = [
  "db",
  "api",
  "auth",
  "cache",
  "mail",
  "files",
  "billing",
  "search",
  "queue",
  "ledger",
  "edge",
  "reports",
  "vault",
  "sso",
  "cdn",
  "metrics",
];
export const DOMAINS = [
  "example.com",
  "corp.local",
  "internal.net",
  "acme.io",
  "northwind.org",
  "shop.example",
  "lab.test",
];
export const PATH_ROOTS = [
  "/var/lib",
  "/var/log",
  "/home",
  "/opt",
  "/srv/data",
  "/etc",
  "C:\\Users",
  "D:\\Projects",
  "C:\\ProgramData",
];
export const PATH_WORDS = [
  "backup",
  "reports",
  "invoices",
  "config",
  "cache",
  "exports",
  "uploads",
  "archive",
  "projects",
  "logs",
  "tmp",
  "shared",
  "q3",
  "payroll",
  "images",
];
export const FILE_STEMS = [
  "settings",
  "report",
  "invoice",
  "budget",
  "schema",
  "inventory",
  "contacts",
  "notes",
  "release",
  "payroll",
  "index",
  "dump",
];
export const FILE_EXTS = ["json", "xlsx", "csv", "db", "yaml", "log", "pdf", "sql", "docx", "toml"];
export const TABLE_NAMES = [
  "orders",
  "customers",
  "invoices",
  "sessions",
  "payments",
  "audit_log",
  "shipments",
  "users",
];
export const SERVICES = [
  "postgres",
  "mysql",
  "redis",
  "mongodb",
  "nginx",
  "rabbitmq",
  "elasticsearch",
  "kafka",
  "memcached",
];
export const PORTS_BY_SERVICE: Record<string, readonly number[]> = {
  postgres: [5432, 5433, 6432],
  mysql: [3306, 3307],
  redis: [6379, 6380],
  mongodb: [27017, 27018],
  nginx: [80, 443, 8080, 8443],
  rabbitmq: [5672, 15672],
  elasticsearch: [9200, 9300],
  kafka: [9092, 9093],
  memcached: [11211],
};

/** Words of `ERR_…` codes that any topic can use after its own words. */
export const CODE_TAILS = [
  "FAILED",
  "DENIED",
  "TIMEOUT",
  "INVALID",
  "MISSING",
  "LOCKED",
  "ABORTED",
  "REJECTED",
];
/** Prefixes of `PREFIX-12345` codes. */
export const CODE_PREFIXES = ["ORA", "PG", "SQL", "NET", "AUTH", "KB", "APP", "SYS", "PAY", "IO"];

/** Menu, sidebar and status texts around the content of a screen. */
export const CHROME_WORDS: Localized<readonly string[]> = {
  en: [
    "File",
    "Edit",
    "View",
    "Tools",
    "Help",
    "Dashboard",
    "Reports",
    "Customers",
    "Settings",
    "Inbox",
    "Projects",
    "Calendar",
    "Team",
    "Billing",
    "Search",
    "Activity",
    "Documents",
    "Archive",
  ],
  zh: [
    "文件",
    "编辑",
    "视图",
    "工具",
    "帮助",
    "仪表盘",
    "报表",
    "客户",
    "设置",
    "收件箱",
    "项目",
    "日历",
    "团队",
    "账单",
    "搜索",
    "动态",
    "文档",
    "归档",
  ],
};

/** Button labels. */
export const BUTTONS: Localized<readonly string[][]> = {
  en: [
    ["OK"],
    ["Retry", "Cancel"],
    ["Close", "Details"],
    ["Try again", "Report"],
    ["Dismiss"],
    ["Open settings", "Cancel"],
  ],
  zh: [
    ["确定"],
    ["重试", "取消"],
    ["关闭", "详细信息"],
    ["再试一次", "反馈问题"],
    ["知道了"],
    ["打开设置", "取消"],
  ],
};

/** Log lines of a terminal before the error: `{time}` and the facts filled in. */
export const LOG_LINES: Localized<readonly string[]> = {
  en: [
    "INFO  starting worker {count} of 8",
    "INFO  loaded configuration from {path}",
    "DEBUG resolved {host} in {seconds} ms",
    "INFO  listening on 0.0.0.0:{port}",
    "INFO  migration {version} already applied",
    "WARN  slow query on {table} took {seconds}s",
    "INFO  cache warmed with {count} entries",
    "INFO  user {user} signed in",
    "DEBUG retry budget {count} remaining",
    "INFO  scheduled job nightly-{table} queued",
    "INFO  health check passed for {service}",
    "WARN  disk usage at {count}% on {path}",
  ],
  zh: [
    "信息 正在启动第 {count} 个工作进程",
    "信息 已从 {path} 加载配置",
    "调试 解析 {host} 用时 {seconds} 毫秒",
    "信息 正在监听端口 {port}",
    "信息 迁移 {version} 已执行",
    "警告 {table} 表查询较慢，耗时 {seconds} 秒",
    "信息 缓存已预热，共 {count} 条",
    "信息 用户 {user} 已登录",
    "信息 定时任务已加入队列",
    "信息 {service} 健康检查通过",
    "警告 {path} 磁盘使用率 {count}%",
  ],
};

/** Shell prompts and commands a terminal starts with. */
export const COMMANDS = [
  "npm run start",
  "docker compose up",
  "python manage.py migrate",
  "systemctl restart {service}",
  "./deploy.sh --env production",
  "make backup",
  "kubectl logs deploy/{service}",
  "cargo run --release",
  "java -jar server.jar",
  "go run ./cmd/worker",
];

/** Form field labels and the facts their values show. */
export const FORM_FIELDS: Localized<ReadonlyArray<readonly [string, FactKind]>> = {
  en: [
    ["Server", "host"],
    ["Port", "port"],
    ["Username", "user"],
    ["Database", "table"],
    ["Folder", "path"],
    ["Version", "version"],
    ["Timeout (s)", "seconds"],
    ["Service", "service"],
  ],
  zh: [
    ["服务器", "host"],
    ["端口", "port"],
    ["用户名", "user"],
    ["数据库", "table"],
    ["文件夹", "path"],
    ["版本", "version"],
    ["超时（秒）", "seconds"],
    ["服务", "service"],
  ],
};

/** Receipt items and their base prices. */
export const RECEIPT_ITEMS: Localized<ReadonlyArray<readonly [string, number]>> = {
  en: [
    ["Espresso", 3.2],
    ["Oat latte", 4.6],
    ["Croissant", 2.9],
    ["USB-C cable", 12.99],
    ["Notebook A5", 6.5],
    ["Printer paper", 8.75],
    ["Sandwich", 7.4],
    ["Green tea", 2.8],
    ["HDMI adapter", 19.9],
    ["Batteries AA x4", 5.49],
    ["Desk lamp", 34.0],
    ["Water 500 ml", 1.2],
  ],
  zh: [
    ["美式咖啡", 18],
    ["拿铁", 26],
    ["牛角包", 12],
    ["数据线", 39],
    ["笔记本", 15],
    ["打印纸", 32],
    ["三明治", 22],
    ["绿茶", 9],
    ["转接头", 59],
    ["电池", 25],
    ["台灯", 129],
    ["矿泉水", 3],
  ],
};

/** The error topics. */
export const ERROR_TOPICS: readonly ErrorTopic[] = [
  {
    id: "db-connection",
    facts: ["service", "host", "port"],
    codeWords: ["CONN_REFUSED", "DB_CONNECT", "CONNECTION_RESET", "DB_UNAVAILABLE"],
    title: {
      en: ["Connection failed", "Database error", "Cannot connect"],
      zh: ["连接失败", "数据库错误", "无法连接"],
    },
    message: {
      en: [
        "Connection refused on port {port}",
        "Could not connect to {service} at {host}:{port}",
        "{service} refused the connection on port {port}",
      ],
      zh: [
        "端口 {port} 拒绝连接",
        "无法连接到 {host}:{port} 上的 {service}",
        "数据库连接被拒绝，端口 {port}",
      ],
    },
    detail: {
      en: ["Check that the database server is running.", "Last attempt at {time}, retrying in {seconds}s"],
      zh: ["请确认数据库服务器正在运行。", "最后一次尝试：{time}，{seconds} 秒后重试"],
    },
    paraphrase: {
      en: [
        "the database connection problem",
        "database server not reachable",
        "app cannot reach its database",
      ],
      zh: ["数据库连不上", "数据库连接问题", "连不上数据库服务器"],
    },
    factQuestion: {
      fact: "port",
      question: {
        en: ["What port does it fail on?", "Which port is refused?"],
        zh: ["连接失败的端口是多少？"],
      },
    },
  },
  {
    id: "license",
    facts: ["date", "version"],
    codeWords: ["LICENSE_EXPIRED", "LICENSE_INVALID", "SUBSCRIPTION_ENDED"],
    title: { en: ["License expired", "Activation required"], zh: ["许可证已过期", "需要激活"] },
    message: {
      en: ["License expired on {date}", "Your license for version {version} expired on {date}"],
      zh: ["许可证已于 {date} 过期", "版本 {version} 的许可证已于 {date} 到期"],
    },
    detail: {
      en: ["Contact your administrator to renew it.", "Some features are now read-only."],
      zh: ["请联系管理员续订。", "部分功能已变为只读。"],
    },
    paraphrase: {
      en: [
        "software license ran out",
        "the subscription is no longer valid",
        "renewal needed for the product key",
      ],
      zh: ["软件授权到期了", "许可证过期的问题"],
    },
    factQuestion: {
      fact: "date",
      question: { en: ["When did the license expire?"], zh: ["许可证是什么时候过期的？"] },
    },
  },
  {
    id: "disk-full",
    facts: ["path", "megabytes"],
    codeWords: ["NO_SPACE", "DISK_FULL", "QUOTA_EXCEEDED"],
    title: { en: ["Disk full", "Not enough space"], zh: ["磁盘已满", "空间不足"] },
    message: {
      en: ["No space left on device {path}", "Cannot write {megabytes} MB to {path}"],
      zh: ["磁盘空间不足：{path}", "无法向 {path} 写入 {megabytes} MB"],
    },
    detail: {
      en: ["Free up space and try again.", "{megabytes} MB needed, 0 MB available"],
      zh: ["请释放空间后重试。", "需要 {megabytes} MB，可用 0 MB"],
    },
    paraphrase: {
      en: ["the disk is full", "storage ran out of room", "drive has no free space left"],
      zh: ["硬盘满了", "存储空间用完了"],
    },
    factQuestion: {
      fact: "path",
      question: {
        en: ["Which path is out of space?", "Where is the disk full?"],
        zh: ["哪个路径空间不足？"],
      },
    },
  },
  {
    id: "permission",
    facts: ["path", "user"],
    codeWords: ["ACCESS_DENIED", "PERMISSION_DENIED", "FORBIDDEN"],
    title: { en: ["Access denied", "Permission error"], zh: ["访问被拒绝", "权限错误"] },
    message: {
      en: ["Access denied: {path}", "User {user} may not open {path}"],
      zh: ["访问被拒绝：{path}", "用户 {user} 无权打开 {path}"],
    },
    detail: {
      en: ["Ask the owner of the folder for access.", "Run the program as an administrator."],
      zh: ["请向文件夹所有者申请权限。", "请以管理员身份运行程序。"],
    },
    paraphrase: {
      en: [
        "not allowed to open the file",
        "missing rights to read the folder",
        "blocked by file permissions",
      ],
      zh: ["没有权限打开文件", "文件权限不够"],
    },
    factQuestion: {
      fact: "path",
      question: { en: ["Which path is access denied to?"], zh: ["哪个路径被拒绝访问？"] },
    },
  },
  {
    id: "timeout",
    facts: ["host", "seconds"],
    codeWords: ["TIMED_OUT", "GATEWAY_TIMEOUT", "REQUEST_TIMEOUT"],
    title: { en: ["Request timed out", "Server not responding"], zh: ["请求超时", "服务器无响应"] },
    message: {
      en: ["Request to {host} timed out after {seconds} s", "{host} did not answer within {seconds} seconds"],
      zh: ["请求 {host} 超时（{seconds} 秒）", "{host} 在 {seconds} 秒内没有响应"],
    },
    detail: {
      en: ["The server may be overloaded.", "Check your network and try again."],
      zh: ["服务器可能负载过高。", "请检查网络后重试。"],
    },
    paraphrase: {
      en: ["server took too long to respond", "the request hung and gave up", "slow backend never answered"],
      zh: ["服务器响应太慢", "请求一直没有回应"],
    },
    factQuestion: {
      fact: "host",
      question: {
        en: ["Which server does it fail to reach?", "Which host timed out?"],
        zh: ["哪个服务器超时了？"],
      },
    },
  },
  {
    id: "certificate",
    facts: ["host", "date"],
    codeWords: ["CERT_EXPIRED", "CERT_INVALID", "SSL_HANDSHAKE"],
    title: { en: ["Certificate error", "Secure connection failed"], zh: ["证书错误", "安全连接失败"] },
    message: {
      en: ["Certificate for {host} has expired", "The certificate of {host} expired on {date}"],
      zh: ["{host} 的证书已过期", "{host} 的证书已于 {date} 到期"],
    },
    detail: {
      en: ["The connection is not private.", "Renew the TLS certificate on the server."],
      zh: ["此连接不是私密连接。", "请在服务器上更新 TLS 证书。"],
    },
    paraphrase: {
      en: ["SSL certificate problem", "https is not trusted anymore", "the TLS cert is out of date"],
      zh: ["证书过期的问题", "网站安全证书有问题"],
    },
    factQuestion: {
      fact: "host",
      question: { en: ["Which host has the bad certificate?"], zh: ["哪个主机的证书过期了？"] },
    },
  },
  {
    id: "memory",
    facts: ["megabytes", "service"],
    codeWords: ["OUT_OF_MEMORY", "HEAP_EXHAUSTED", "ALLOC_FAILED"],
    title: { en: ["Out of memory", "Memory error"], zh: ["内存不足", "内存错误"] },
    message: {
      en: [
        "Out of memory: failed to allocate {megabytes} MB",
        "{service} was stopped after using {megabytes} MB",
      ],
      zh: ["内存不足：无法分配 {megabytes} MB", "{service} 占用 {megabytes} MB 后被终止"],
    },
    detail: {
      en: ["Close other programs and retry.", "Raise the memory limit of the container."],
      zh: ["请关闭其他程序后重试。", "请提高容器的内存上限。"],
    },
    paraphrase: {
      en: ["ran out of RAM", "the process needed more memory than it had", "heap exhausted crash"],
      zh: ["内存不够用了", "程序内存耗尽"],
    },
    factQuestion: {
      fact: "megabytes",
      question: {
        en: ["How many MB did it need?", "How much memory was it using?"],
        zh: ["需要多少 MB 内存？"],
      },
    },
  },
  {
    id: "file-missing",
    facts: ["file", "path"],
    codeWords: ["FILE_NOT_FOUND", "NO_SUCH_FILE", "MISSING_FILE"],
    title: { en: ["File not found", "Cannot open file"], zh: ["找不到文件", "无法打开文件"] },
    message: {
      en: ["File not found: {file}", "Cannot open {file} in {path}"],
      zh: ["找不到文件：{file}", "无法打开 {path} 中的 {file}"],
    },
    detail: {
      en: ["It may have been moved or deleted.", "Check the name and the folder."],
      zh: ["文件可能已被移动或删除。", "请检查文件名和文件夹。"],
    },
    paraphrase: {
      en: ["missing file", "the document could not be located", "a file that was deleted or moved"],
      zh: ["文件丢失了", "找不到那个文件"],
    },
    factQuestion: {
      fact: "file",
      question: { en: ["Which file is missing?", "What file can it not find?"], zh: ["缺少哪个文件？"] },
    },
  },
  {
    id: "auth",
    facts: ["user", "count"],
    codeWords: ["AUTH_FAILED", "BAD_PASSWORD", "LOGIN_DENIED", "TOKEN_EXPIRED"],
    title: { en: ["Sign-in failed", "Authentication error"], zh: ["登录失败", "认证错误"] },
    message: {
      en: ["Invalid password for user {user}", "Login for {user} failed {count} times"],
      zh: ["用户 {user} 密码错误", "用户 {user} 登录失败 {count} 次"],
    },
    detail: {
      en: ["The account will be locked after 5 attempts.", "Reset your password from the sign-in page."],
      zh: ["连续 5 次失败后账户将被锁定。", "请在登录页面重置密码。"],
    },
    paraphrase: {
      en: ["login failed wrong password", "could not sign in to the account", "credentials were rejected"],
      zh: ["密码不对登录不了", "账号登录失败"],
    },
    factQuestion: {
      fact: "user",
      question: { en: ["Which user could not sign in?"], zh: ["哪个用户登录失败？"] },
    },
  },
  {
    id: "payment",
    facts: ["card", "amount"],
    codeWords: ["CARD_DECLINED", "PAYMENT_FAILED", "INSUFFICIENT_FUNDS"],
    title: { en: ["Payment declined", "Transaction failed"], zh: ["支付被拒绝", "交易失败"] },
    message: {
      en: ["Card ending {card} was declined", "Payment of {amount} could not be completed"],
      zh: ["尾号 {card} 的银行卡被拒绝", "金额 {amount} 的付款未能完成"],
    },
    detail: {
      en: ["Use another card or contact your bank.", "No money was taken from your account."],
      zh: ["请更换银行卡或联系发卡行。", "您的账户未被扣款。"],
    },
    paraphrase: {
      en: [
        "payment did not go through",
        "the card was refused at checkout",
        "purchase was rejected by the bank",
      ],
      zh: ["付款没成功", "银行卡支付失败"],
    },
    factQuestion: {
      fact: "card",
      question: { en: ["What are the last digits of the card?"], zh: ["银行卡尾号是多少？"] },
    },
  },
  {
    id: "rate-limit",
    facts: ["seconds", "count"],
    codeWords: ["RATE_LIMITED", "TOO_MANY_REQUESTS", "QUOTA_LIMIT"],
    title: { en: ["Too many requests", "Slow down"], zh: ["请求过多", "请求太频繁"] },
    message: {
      en: [
        "Too many requests: retry after {seconds} seconds",
        "Limit of {count} requests per minute reached",
      ],
      zh: ["请求过多，请在 {seconds} 秒后重试", "已达到每分钟 {count} 次请求的上限"],
    },
    detail: {
      en: ["Your API key is being throttled.", "Upgrade the plan for higher limits."],
      zh: ["您的 API 密钥已被限流。", "升级套餐可获得更高额度。"],
    },
    paraphrase: {
      en: ["being throttled", "the api rate limit was hit", "calls blocked for sending too fast"],
      zh: ["接口被限流了", "调用太频繁被限制"],
    },
    factQuestion: {
      fact: "seconds",
      question: { en: ["How many seconds until it can retry?"], zh: ["多少秒后可以重试？"] },
    },
  },
  {
    id: "update",
    facts: ["version", "megabytes"],
    codeWords: ["UPDATE_FAILED", "INSTALL_ABORTED", "PATCH_REJECTED"],
    title: { en: ["Update failed", "Installation error"], zh: ["更新失败", "安装错误"] },
    message: {
      en: ["Update {version} could not be installed", "Installing version {version} stopped at {count}%"],
      zh: ["更新 {version} 安装失败", "安装版本 {version} 时在 {count}% 处中断"],
    },
    detail: {
      en: ["The previous version is still in use.", "Download size {megabytes} MB"],
      zh: ["仍在使用旧版本。", "下载大小 {megabytes} MB"],
    },
    paraphrase: {
      en: ["the upgrade broke", "new version would not install", "software update went wrong"],
      zh: ["升级没装上", "软件更新出错"],
    },
    factQuestion: {
      fact: "version",
      question: { en: ["Which version failed to install?"], zh: ["哪个版本安装失败？"] },
    },
  },
  {
    id: "network",
    facts: ["ip", "service"],
    codeWords: ["NETWORK_UNREACHABLE", "HOST_UNREACHABLE", "DNS_FAILURE"],
    title: { en: ["Network error", "No connection"], zh: ["网络错误", "无网络连接"] },
    message: {
      en: ["Network is unreachable: {ip}", "No route to host {ip}"],
      zh: ["网络不可达：{ip}", "无法路由到主机 {ip}"],
    },
    detail: {
      en: ["Check the cable or Wi-Fi.", "The VPN may be disconnected."],
      zh: ["请检查网线或 Wi-Fi。", "VPN 可能已断开。"],
    },
    paraphrase: {
      en: ["no internet connection", "the machine is offline", "cannot get onto the network"],
      zh: ["网络断了", "连不上网"],
    },
    factQuestion: {
      fact: "ip",
      question: { en: ["Which IP address is unreachable?"], zh: ["哪个 IP 地址不可达？"] },
    },
  },
  {
    id: "sync",
    facts: ["file", "user"],
    codeWords: ["SYNC_CONFLICT", "MERGE_CONFLICT", "VERSION_MISMATCH"],
    title: { en: ["Sync conflict", "Changes not saved"], zh: ["同步冲突", "更改未保存"] },
    message: {
      en: ["Sync conflict in {file}", "{user} changed {file} at the same time"],
      zh: ["{file} 同步冲突", "{user} 同时修改了 {file}"],
    },
    detail: {
      en: ["Both copies were kept.", "Choose which version to keep."],
      zh: ["两个副本均已保留。", "请选择要保留的版本。"],
    },
    paraphrase: {
      en: [
        "two versions of the file clash",
        "edits collided while syncing",
        "conflicting copies of a document",
      ],
      zh: ["文件版本冲突", "同步时出现冲突"],
    },
    factQuestion: {
      fact: "file",
      question: { en: ["Which file has the conflict?"], zh: ["哪个文件发生冲突？"] },
    },
  },
];
